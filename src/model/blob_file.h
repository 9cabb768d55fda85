// blob_file.h (internal): a whole file as one byte string, for the engine's save/load of states.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "groupmates/error.h"

namespace groupmates {

/// Writes `blob` to `path` (replacing it); Error(kIo, path, "cannot write the <what>") on failure.
inline void write_blob_file(const std::string& path, const std::string& blob, const std::string& what) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(blob.data(), static_cast<std::streamsize>(blob.size()));
  if (!out) throw Error(ErrorCode::kIo, path, "cannot write the " + what);
}

/// The bytes of `path`; Error(kIo, path, "cannot open the <what>") if it cannot be opened.
inline std::string read_blob_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kIo, path, "cannot open the " + what);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace groupmates
