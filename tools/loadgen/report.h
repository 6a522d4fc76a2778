#pragma once
// tranche-loadgen's output: a table for people and one JSON line for scripts
// (bench/zero-downtime reads it). Both from a finished Tally.

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "options.h"
#include "stats.h"

namespace tranche::loadgen {

// `elapsed`: from the start to the end of the run.
std::string format_table(const Tally& tally, const Options& opts, std::chrono::milliseconds elapsed);

// {"bench":"loadgen","url":...,"connections":n,"keep_alive_rate":x,"new_connection_rate":x,
//  "slow_rate":x,"slow_path":...,"elapsed_s":...,"sent":...,"rps":x,"ok":...,"failed":...,
//  "failures":{"http":{"503":n},"refused":n,"reset":n,"timeout":n,"other":n},
//  "latency_ms":{"p50":x,"p99":x,"max":x} (of the requests that are not slow),
//  "keep_alive":{"sent":n,"failed":n},"new_connection":{...},"slow":{...},
//  "slow_latency_ms":{"p50":x,"p99":x,"max":x},"versions":{"1.0.0":n},
//  "buckets":[{"t_s":0,"ok":n,"failed":n,"versions":{"1.0.0":n}}, ...],
//  "phases":{"steady":{"duration_s":x,"sent":n,"ok":n,"failed":n,"rps":x,"p50_ms":x,
//            "p99_ms":x,"max_ms":x,"slow_sent":n,"slow_failed":n,"slow_p99_ms":x}, ...}}
// A phase counts the requests that began in it (its latencies: not slow
// ones, slow_p99_ms aside); without --phase-file there is one, "run".
nlohmann::ordered_json to_json(const Tally& tally, const Options& opts, std::chrono::milliseconds elapsed);

}  // namespace tranche::loadgen
