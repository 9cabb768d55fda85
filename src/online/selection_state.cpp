#include "online/selection_state.h"

#include <sstream>

#include "groupmates/error.h"
#include "model/weights_format.h"
#include "online/blob_text.h"

namespace groupmates {

namespace {

using Extra = std::map<std::string, std::string>;

struct Writer {
  Extra& x;
  const std::string& base;  // first_blob's bytes: weights are saved as deltas against them
  void operator()(const std::string& k, uint64_t v) const { x[k] = std::to_string(v); }
  void operator()(const std::string& k, int64_t v) const { x[k] = std::to_string(v); }
  void operator()(const std::string& k, bool v) const { x[k] = v ? "1" : "0"; }
  void operator()(const std::string& k, const Blob& v) const { x[k] = blob_to_text(v.bytes); }
  void operator()(const std::string& k, const WeightsBlob& v) const {
    const std::string delta = weights_delta(v.bytes, base);  // "" when not weights or nothing shared
    x[k] = blob_to_text(delta.empty() ? v.bytes : delta);
  }
  void operator()(const std::string& k, const OptionalText& v) const { x[k] = v.text; }
  void operator()(const std::string& k, const OptionalBlob& v) const {
    if (!v.bytes.empty()) x[k] = blob_to_text(v.bytes);
  }
  void operator()(const std::string& k, const OptionalCount& v) const { x[k] = std::to_string(v.value); }
  void operator()(const std::string& k, const std::vector<SavedRefresh>& v) const {
    x[k] = std::to_string(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      const std::string p = k + "." + std::to_string(i);
      (*this)(p + ".probe_step", v[i].probe_step);
      (*this)(p + ".effective_at", v[i].effective_at);
      (*this)(p + ".blob", v[i].weights);
    }
  }
  void operator()(const std::string& k, const std::vector<VersionSwitch>& v) const {
    std::string s;
    for (const auto& sw : v)
      s += (s.empty() ? "" : ",") + std::to_string(sw.window) + ":" + std::to_string(sw.probe_step) + ":" +
           std::to_string(sw.version);
    x[k] = s;
  }
};

struct Reader {
  const Extra& x;

  const std::string& get(const std::string& k) const {
    auto it = x.find(k);
    if (it == x.end())
      throw Error(ErrorCode::kInvalidState, "LoaderState.extra." + k,
                  "missing: this state was not saved by a selecting GroupMatesLoader (restore it with SelectionMode::kNone)");
    return it->second;
  }
  [[noreturn]] static void malformed(const std::string& k, const std::string& v, const char* expected) {
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra." + k,
                "'" + v.substr(0, 40) + "' is not " + expected + ": the state text was edited or truncated");
  }
  template <typename T, typename Parse>
  static T number(const std::string& k, const std::string& v, Parse parse, const char* expected) {
    try {
      size_t used = 0;
      const T n = parse(v, &used);
      if (used == v.size() && !v.empty()) return n;
    } catch (const std::exception&) {
    }
    malformed(k, v, expected);
  }
  void operator()(const std::string& k, uint64_t& v) const {
    const std::string& s = get(k);
    if (!s.empty() && s[0] == '-') malformed(k, s, "an unsigned integer");
    v = number<uint64_t>(k, s, [](const std::string& t, size_t* n) { return std::stoull(t, n); }, "an unsigned integer");
  }
  void operator()(const std::string& k, int64_t& v) const {
    v = number<int64_t>(k, get(k), [](const std::string& t, size_t* n) { return std::stoll(t, n); }, "an integer");
  }
  void operator()(const std::string& k, bool& v) const {
    const std::string& s = get(k);
    if (s != "0" && s != "1") malformed(k, s, "0 or 1");
    v = s == "1";
  }
  void operator()(const std::string& k, Blob& v) const { v.bytes = text_to_blob(get(k), k); }
  void operator()(const std::string& k, WeightsBlob& v) const { v.bytes = text_to_blob(get(k), k); }
  void operator()(const std::string& k, OptionalBlob& v) const {
    v.bytes = x.count(k) ? text_to_blob(get(k), k) : std::string();
  }
  void operator()(const std::string& k, OptionalText& v) const {
    auto it = x.find(k);
    v.text = it == x.end() ? std::string() : it->second;
  }
  void operator()(const std::string& k, OptionalCount& v) const {
    v.value = 0;
    v.present = x.count(k) > 0;
    if (v.present) (*this)(k, v.value);
  }
  void operator()(const std::string& k, std::vector<SavedRefresh>& v) const {
    uint64_t n = 0;
    (*this)(k, n);
    v.assign(n, SavedRefresh{});
    for (size_t i = 0; i < n; ++i) {
      const std::string p = k + "." + std::to_string(i);
      (*this)(p + ".probe_step", v[i].probe_step);
      (*this)(p + ".effective_at", v[i].effective_at);
      (*this)(p + ".blob", v[i].weights);
    }
  }
  void operator()(const std::string& k, std::vector<VersionSwitch>& v) const {
    std::istringstream in(get(k));
    VersionSwitch sw;
    char c1, c2;
    v.clear();
    while (in >> sw.window >> c1 >> sw.probe_step >> c2 >> sw.version) {
      if (c1 != ':' || c2 != ':') throw Error(ErrorCode::kInvalidState, "LoaderState.extra." + k, "malformed");
      v.push_back(sw);
      in >> std::ws;
      if (in.peek() == ',') in.get();
    }
  }
};

}  // namespace

void SelectionState::write(Extra& extra) const { visit(*this, Writer{extra, first_blob.bytes}); }

SelectionState SelectionState::read_unexpanded(const Extra& extra) {
  SelectionState s;
  visit(s, Reader{extra});
  return s;
}

SelectionState SelectionState::read(const Extra& extra) {
  SelectionState s = read_unexpanded(extra);
  s.expand_weight_deltas();
  return s;
}

void SelectionState::expand_weight_deltas() {
  std::vector<std::pair<std::string, std::string*>> deltas;
  if (is_weights_delta(second_blob.bytes)) deltas.emplace_back("gm.second_blob", &second_blob.bytes);
  if (is_weights_delta(trainer.bytes)) deltas.emplace_back("gm.trainer", &trainer.bytes);
  for (size_t i = 0; i < pending.size(); ++i)
    if (is_weights_delta(pending[i].weights.bytes))
      deltas.emplace_back("gm.pending." + std::to_string(i) + ".blob", &pending[i].weights.bytes);
  if (deltas.empty()) return;
  read_weights(first_blob.bytes, "LoaderState.extra.gm.first_blob");  // a damaged base is named as such
  for (auto& [key, bytes] : deltas) *bytes = apply_weights_delta(*bytes, first_blob.bytes, "LoaderState.extra." + key);
}

}  // namespace groupmates
