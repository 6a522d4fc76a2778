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

// {"bench":"loadgen","url":...,"elapsed_s":...,"sent":...,"ok":...,"failed":...,
//  "failures":{"http":{"503":n},"refused":n,"reset":n,"timeout":n,"other":n},
//  "latency_ms":{"p50":x,"p99":x,"max":x},"keep_alive":{"sent":n,"failed":n},
//  "new_connection":{...},"versions":{"1.0.0":n},
//  "buckets":[{"t_s":0,"ok":n,"failed":n,"versions":{"1.0.0":n}}, ...]}
nlohmann::ordered_json to_json(const Tally& tally, const Options& opts, std::chrono::milliseconds elapsed);

}  // namespace tranche::loadgen
