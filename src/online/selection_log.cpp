#include "online/selection_log.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "groupmates/error.h"

namespace groupmates {

SelectionLog::SelectionLog(const std::string& path) {
  if (path.empty()) return;
  out_.open(path, std::ios::app);
  if (!out_) throw Error(ErrorCode::kIo, path, "cannot open the selection log for appending (SelectionConfig.log_path)");
}

void SelectionLog::write(const LoggedRow& r) {
  nlohmann::ordered_json j;
  j["step"] = r.step;
  j["window"] = r.window;
  j["row"] = r.row;
  j["id"] = r.id.hash;
  j["source"] = r.id.source;
  j["document"] = r.id.document;
  j["offset"] = r.id.offset;
  j["cluster"] = r.cluster;
  j["influence"] = std::isnan(r.influence) ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.influence);
  j["version"] = r.version;
  out_ << j.dump() << '\n';
}

}  // namespace groupmates
