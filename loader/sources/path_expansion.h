// path_expansion.h: globs and directories in SourceConfig::paths, expanded when a source opens.
//
// An entry with a glob character (* ? [) is expanded with glob(3) (regular files only); a directory stands for the data
// files directly inside it (by format: .jsonl / .jsonl.zst / .zst / .json for kJsonl, .idx
// prefixes for kMegatron, every file for kTokenFile); anything else is kept as written. Each
// entry's matches are sorted bytewise (deterministic across machines and locales) and entries keep
// their order. Hidden files (a name starting with '.', such as the `.NAME.gmidx` line index cache)
// and temporary files (`NAME.tmp.*`) are never matched. An entry that matches nothing is an error
// naming the entry and its field.
#pragma once

#include <string>
#include <vector>

#include "groupmates/config.h"

namespace groupmates {

/// `paths` with globs and directories expanded. `field` names the config field in errors (e.g.
/// "sources[0].paths"). Throws Error(kInvalidConfig) for an entry matching no file, Error(kIo)
/// for a directory that cannot be listed.
std::vector<std::string> expand_paths(const std::vector<std::string>& paths, SourceFormat format, const std::string& field);

}  // namespace groupmates
