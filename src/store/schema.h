#pragma once
// Internal to the SQLite backend (and its tests): schema versions and the
// point-to-point steps between them. See README.md, "Schema versions".

#include <sqlite3.h>

#include "common/error.h"

namespace tranche::schema {

// The version a new or migrated database ends at (current_schema_version()).
int current_version();

// meta.schema_version of an open database; 0 for an empty database (no
// tables). Only reads. kUnavailable when the file is not a tranche store or
// cannot be read.
Result<int> read_version(sqlite3* db);

// Runs every step from the database's version up to `target`, all in one
// BEGIN EXCLUSIVE transaction that also records the new schema_version; on
// any error nothing is changed. Refuses a database newer than `target`
// without touching it. Tests use `target` < current to build old versions.
Result<int> migrate(sqlite3* db, int target);

}  // namespace tranche::schema
