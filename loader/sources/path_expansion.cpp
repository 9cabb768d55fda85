// Globs and directories in source paths (see path_expansion.h).
#include "sources/path_expansion.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "groupmates/error.h"

namespace groupmates {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool hidden_or_temporary(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  return name.empty() || name[0] == '.' || name.find(".tmp.") != std::string::npos;
}

// What a directory contributes for `format`: data file names (kMegatron: prefixes).
bool take_from_directory(const std::string& name, SourceFormat format, std::string* entry) {
  switch (format) {
    case SourceFormat::kJsonl:
      if (!ends_with(name, ".jsonl") && !ends_with(name, ".zst") && !ends_with(name, ".json")) return false;
      *entry = name;
      return true;
    case SourceFormat::kMegatron:
      if (!ends_with(name, ".idx")) return false;
      *entry = name.substr(0, name.size() - 4);
      return true;
    case SourceFormat::kTokenFile:
      *entry = name;
      return true;
  }
  return false;
}

const char* what_a_directory_holds(SourceFormat format) {
  switch (format) {
    case SourceFormat::kJsonl: return "no .jsonl, .jsonl.zst, .zst or .json file";
    case SourceFormat::kMegatron: return "no .idx file (a Megatron dataset is PREFIX.bin + PREFIX.idx)";
    case SourceFormat::kTokenFile: return "no file";
  }
  return "no data file";
}

}  // namespace

std::vector<std::string> expand_paths(const std::vector<std::string>& paths, SourceFormat format, const std::string& field) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  for (const std::string& p : paths) {
    std::vector<std::string> matches;
    std::error_code ec;
    if (p.find_first_of("*?[") != std::string::npos) {
      glob_t g{};
      const int rc = ::glob(p.c_str(), GLOB_NOSORT, nullptr, &g);
      if (rc == 0) {
        for (size_t k = 0; k < g.gl_pathc; k++) {
          std::string m = g.gl_pathv[k];
          if (hidden_or_temporary(m) || !std::filesystem::is_regular_file(m, ec)) continue;  // files only
          // A glob over Megatron files names .bin and .idx: keep each prefix once.
          if (format == SourceFormat::kMegatron) {
            if (ends_with(m, ".idx")) m.resize(m.size() - 4);
            else if (ends_with(m, ".bin")) m.resize(m.size() - 4);
          }
          matches.push_back(std::move(m));
        }
      }
      globfree(&g);
      if (rc != 0 && rc != GLOB_NOMATCH) throw Error(ErrorCode::kIo, p, field + ": the glob could not be expanded (read error)");
      std::sort(matches.begin(), matches.end());
      matches.erase(std::unique(matches.begin(), matches.end()), matches.end());
      if (matches.empty()) {
        throw Error(ErrorCode::kInvalidConfig, p, field + ": the pattern matches no file; check the directory and the pattern");
      }
    } else if (fs::is_directory(p, ec)) {
      fs::directory_iterator it(p, ec);
      if (ec) throw Error(ErrorCode::kIo, p, field + ": cannot list the directory: " + ec.message());
      for (const auto& e : it) {
        const std::string name = e.path().filename().string();
        std::string entry;
        if (hidden_or_temporary(name) || !e.is_regular_file(ec) || !take_from_directory(name, format, &entry)) continue;
        matches.push_back((e.path().parent_path() / entry).string());
      }
      std::sort(matches.begin(), matches.end());
      if (matches.empty()) {
        throw Error(ErrorCode::kInvalidConfig, p, field + ": the directory holds " + what_a_directory_holds(format) +
                                                      "; point the entry at the data files or a glob matching them");
      }
    } else {
      matches.push_back(p);
    }
    out.insert(out.end(), matches.begin(), matches.end());
  }
  return out;
}

}  // namespace groupmates
