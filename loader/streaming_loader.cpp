// The plain streaming loader. Threads and who owns what:
//   * the planner thread walks the global candidate stream (blend -> source cursors), keeps this
//     rank's rows, snapshots the state after each global batch, and posts one assembly task per
//     batch to the pool; at most prefetch_batches batches are planned and not yet consumed;
//   * pool threads (util/lazy_thread_pool.h) read/tokenize documents ahead for the cursors and
//     assemble batches (copy + widen tokens into a pooled buffer); they never block;
//   * the consumer (next()) takes batches strictly in order from the reorder slots.
// With reader_count = k > 1 (e.g. k DataLoader worker processes of one rank), this loader plans
// every global batch (the stream and its state stay global) but reads, assembles and returns only
// the batches g with g % k == reader_index.
#include "groupmates/streaming_loader.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <xxhash.h>

#include "stream/blend_schedule.h"
#include "stream/buffer_pool.h"
#include "sources/path_expansion.h"
#include "sources/document_source.h"
#include "sources/mapped_file.h"
#include "groupmates/error.h"
#include "groupmates/rank_environment.h"
#include "stream/skip_counters.h"
#include "stream/source_cursor.h"
#include "sources/token_file_source.h"
#include "util/lazy_thread_pool.h"
#include "util/stopwatch.h"

namespace groupmates {

namespace {

// Copies `n` tokens to `out` as int64: loops the compiler vectorises, built twice on x86-64 (AVX2
// and the baseline, picked at load time by the CPU: measured 1.5 -> 2.1 G tokens/s for uint16).
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones) && !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
#define GM_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef GM_CPU_CLONES
#define GM_CPU_CLONES
#endif

#define GM_DEFINE_WIDEN(T)                                              \
  GM_CPU_CLONES void widen(const T* in, uint64_t n, int64_t* out) {     \
    for (uint64_t i = 0; i < n; ++i) out[i] = static_cast<int64_t>(in[i]); \
  }
GM_DEFINE_WIDEN(uint8_t)
GM_DEFINE_WIDEN(uint16_t)
GM_DEFINE_WIDEN(int16_t)
GM_DEFINE_WIDEN(uint32_t)
GM_DEFINE_WIDEN(int32_t)
GM_DEFINE_WIDEN(int64_t)
#undef GM_DEFINE_WIDEN

void widen_view(const TokenView& v, int64_t* out) {
  switch (v.width) {
    case TokenWidth::kU8: widen(static_cast<const uint8_t*>(v.data), v.size, out); break;
    case TokenWidth::kU16: widen(static_cast<const uint16_t*>(v.data), v.size, out); break;
    case TokenWidth::kI16: widen(static_cast<const int16_t*>(v.data), v.size, out); break;
    case TokenWidth::kU32: widen(static_cast<const uint32_t*>(v.data), v.size, out); break;
    case TokenWidth::kI32: widen(static_cast<const int32_t*>(v.data), v.size, out); break;
    case TokenWidth::kI64: widen(static_cast<const int64_t*>(v.data), v.size, out); break;
  }
}

// True if every value of out[0, n) is in [0, vocab).
GM_CPU_CLONES bool in_vocab(const int64_t* out, uint64_t n, uint64_t vocab) {
  uint64_t bad = 0;
  for (uint64_t i = 0; i < n; ++i) bad |= static_cast<uint64_t>(out[i]) >= vocab;  // negative wraps high
  return bad == 0;
}

std::string source_name(const LoaderConfig& c, size_t i) {
  return c.sources[i].name.empty() ? "source" + std::to_string(i) : c.sources[i].name;
}

}  // namespace

struct StreamingLoader::Impl {
  LoaderConfig config;
  std::vector<std::unique_ptr<SourceCursor>> cursors;
  std::vector<std::string> names;
  BlendSchedule blend;
  SkipCounters skips;
  uint64_t fingerprint = 0;       // by content: what a version 2 state must match
  uint64_t path_fingerprint = 0;  // with the paths: what a version 1 state must match
  // Each source as opened: its paths (expanded), and its data files by content, in reading order.
  struct OpenedSource {
    std::vector<std::string> paths;
    std::vector<DataFileFingerprint> files;
    LocalShuffle shuffle;  // the local shuffle in effect (block 0: global, or windows)
  };
  std::vector<OpenedSource> opened;
  LazyThreadPool pool;  // its threads start at the first read-ahead or batch (construction starts none)
  std::shared_ptr<BufferPool> buffers;

  // Planner-owned position in the global stream.
  uint64_t pass = 0;
  uint64_t plan_batch_index = 0;
  uint64_t plan_samples = 0;  // candidates of the global batches planned so far
  bool plan_ended = false;

  // One planned batch, filled by a pool thread.
  struct Slot {
    bool ready = false;
    bool end = false;
    std::exception_ptr error;
    HostBatch batch;
    LoaderState state_after;
  };
  mutable std::mutex mu;
  std::condition_variable consumer_cv;  // the slot the consumer waits for was filled
  std::condition_variable planner_cv;   // in-flight count fell to the low-water mark, or stop
  std::map<uint64_t, Slot> slots;
  uint32_t in_flight = 0;               // batches planned and not yet taken by the consumer
  uint64_t consumer_waits_for = UINT64_MAX;
  bool planner_waiting = false;
  bool stop = false;
  std::thread planner;

  // Consumer-owned.
  uint64_t next_index = 0;
  LoaderState current;
  std::exception_ptr failed;
  bool ended = false;
  uint64_t batches_returned = 0;
  double wait_seconds = 0;

  static LoaderConfig validated(LoaderConfig c) {
    c = resolve_ranks(std::move(c), read_rank_environment());
    c.validate();
    return c;
  }

  Impl(LoaderConfig cfg, BufferAllocator allocator)
      : config(validated(std::move(cfg))), blend(weights(config)), pool(config.num_threads) {
    open_sources();
    const size_t bytes = size_t{config.batch_size} * config.row_length() * sizeof(int64_t);
    buffers = BufferPool::create(bytes, std::move(allocator));
  }

  static std::vector<double> weights(const LoaderConfig& c) {
    std::vector<double> w;
    for (const auto& s : c.sources) w.push_back(s.weight);
    return w;
  }

  CursorContext cursor_context(size_t i) {
    CursorContext ctx;
    ctx.source_index = static_cast<uint32_t>(i);
    ctx.source_name = source_name(config, i);
    ctx.seed = config.seed;
    ctx.shuffle = config.shuffle;
    ctx.shuffle_block = 0;  // set for documents by open_source (kShuffleBlockAuto is chosen per source)
    ctx.shuffle_span = config.shuffle_span;
    ctx.sequence_length = config.row_length();
    ctx.packing = config.packing;
    const SourceConfig& sc = config.sources[i];
    // append_eos false: the documents end with their own EOS; else the source's id or the loader's.
    ctx.eos_id = !sc.append_eos ? -1 : sc.eos_id == kLoaderEosId ? config.eos_id : sc.eos_id;
    ctx.pad_id = config.pad_id;
    ctx.read_ahead = config.tokenize_ahead;
    ctx.pool = &pool;
    ctx.skips = &skips;
    return ctx;
  }

  // Opens source i reading `paths` (expanded, in this order) into cursors[i] and opened[i].
  void open_source(size_t i, std::vector<std::string> paths) {
    SourceConfig sc = config.sources[i];
    sc.name = source_name(config, i);  // readers label their skip counters with it
    sc.paths = paths;
    CursorContext ctx = cursor_context(i);
    std::unique_ptr<SourceCursor> cursor;
    LocalShuffle shuffle;
    if (sc.format == SourceFormat::kTokenFile) {
      auto src = std::make_shared<const TokenFileSource>(sc, config.row_length());
      if (src->num_windows() == 0)
        throw Error(ErrorCode::kCorruptData, sc.paths[0],
                    "source '" + ctx.source_name + "' has no complete window of " + std::to_string(config.row_length()) +
                        " tokens (sequence_length, +1 with labels): use longer files or a shorter sequence_length");
      cursor = make_window_cursor(src, ctx);
    } else {
      std::shared_ptr<const DocumentSource> src = open_document_source(sc, config.bad_input);
      if (config.shuffle && config.shuffle_block == kShuffleBlockAuto) {
        shuffle = src->auto_shuffle(config.shuffle_span);
      } else if (config.shuffle && config.shuffle_block > 0) {
        shuffle = {config.shuffle_block, config.shuffle_span};
      }
      ctx.shuffle_block = shuffle.block;
      if (shuffle.block > 0) ctx.shuffle_span = shuffle.span;
      cursor = make_document_cursor(src, ctx);
    }
    OpenedSource o;
    o.paths = std::move(paths);
    o.files = cursor->data_files();
    o.shuffle = shuffle;
    for (auto& f : o.files) f.source = static_cast<uint32_t>(i);
    if (cursors.size() <= i) cursors.resize(i + 1), opened.resize(i + 1);
    cursors[i] = std::move(cursor);
    opened[i] = std::move(o);
  }

  void open_sources() {
    for (size_t i = 0; i < config.sources.size(); ++i) {
      names.push_back(source_name(config, i));
      open_source(i, expand_paths(config.sources[i].paths, config.sources[i].format, "sources[" + std::to_string(i) + "].paths"));
    }
    compute_fingerprints();
  }

  // The stream's fingerprints over the opened sources: by content (`fingerprint`) and version 1's
  // (`path_fingerprint`, the same mixes over the sources' path-including fingerprints).
  void compute_fingerprints() {
    for (const bool with_paths : {false, true}) {
      uint64_t h = XXH3_64bits_withSeed(&config.seed, sizeof(config.seed), 0x67726f7570ULL);
      auto mix = [&h](uint64_t v) { h = XXH3_64bits_withSeed(&v, sizeof(v), h); };
      mix(config.row_length());
      mix(config.shuffle);
      const bool documents = std::any_of(config.sources.begin(), config.sources.end(),
                                         [](const SourceConfig& sc) { return sc.format != SourceFormat::kTokenFile; });
      // Only when it orders something (documents) and is set: fingerprints of earlier states stay valid.
      if (config.shuffle && config.shuffle_block == kShuffleBlockAuto) {
        // What auto chose, per source; nothing when every source is globally permuted (as before auto).
        if (std::any_of(opened.begin(), opened.end(), [](const OpenedSource& o) { return o.shuffle.block > 0; })) {
          mix(0x6175746fULL);
          for (const OpenedSource& o : opened) mix((uint64_t{o.shuffle.block} << 32) | o.shuffle.span);
        }
      } else if (config.shuffle && config.shuffle_block > 0 && documents) {
        mix(0x626c6f636bULL);
        mix(config.shuffle_block);
        mix(config.shuffle_span);
      }
      mix(static_cast<uint64_t>(config.packing));
      mix(static_cast<uint64_t>(config.eos_id));
      mix(static_cast<uint64_t>(config.pad_id));
      for (size_t i = 0; i < config.sources.size(); ++i) {
        const SourceConfig& sc = config.sources[i];
        mix(with_paths ? cursors[i]->path_fingerprint() : cursors[i]->fingerprint());
        mix(XXH3_64bits(names[i].data(), names[i].size()));
        uint64_t wbits;
        std::memcpy(&wbits, &sc.weight, sizeof(wbits));
        mix(wbits);
        mix(static_cast<uint64_t>(sc.on_exhausted));
        if (!sc.append_eos) mix(0x656f73ULL);  // only when set: fingerprints of earlier states stay valid
        if (sc.eos_id != kLoaderEosId) {
          mix(0x736f75726365656fULL);
          mix(static_cast<uint64_t>(sc.eos_id));
        }
      }
      (with_paths ? path_fingerprint : fingerprint) = h;
    }
  }

  uint64_t global_batch_size() const { return uint64_t{config.batch_size} * config.world_size; }

  LoaderState snapshot() {
    LoaderState s;
    s.config_fingerprint = fingerprint;
    s.global_batch_size = global_batch_size();
    s.batches = plan_batch_index;
    s.samples = plan_samples;
    s.pass = pass;
    s.ended = plan_ended;
    s.blend_counts = blend.counts();
    for (const auto& c : cursors) {
      const CursorState cs = c->save();
      s.sources.push_back({cs.epoch, cs.position, cs.offset});
    }
    s.skipped = skips.counts();
    for (const auto& o : opened) s.files.insert(s.files.end(), o.files.begin(), o.files.end());
    return s;
  }

  static std::string hex64(uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
    return buf;
  }

  // A version 2 state: each saved file is matched by content (size + sampled hash) to a file of the
  // same source, never by path, so data copied, moved or renamed resumes. Order: when the files
  // match one to one but the paths (as listed and expanded) give them in another order, e.g. shards
  // renamed so that they sort differently, the source is reopened in the saved order, which is the
  // order the stream was built from; files of equal content are taken in their listed order. A
  // saved file that matches nothing is an error naming the file and what changed.
  void match_files(const LoaderState& s) {
    for (const auto& f : s.files)
      if (f.source >= cursors.size())
        throw Error(ErrorCode::kInvalidState, "LoaderState.files",
                    "names source " + std::to_string(f.source) + " but the config has " + std::to_string(cursors.size()) +
                        " sources: restore the state with the config it was saved with");
    if (s.files.empty()) return;  // nothing recorded: config_fingerprint alone
    bool reopened = false;
    for (size_t i = 0; i < cursors.size(); ++i) {
      std::vector<DataFileFingerprint> saved;
      for (const auto& f : s.files)
        if (f.source == i) saved.push_back(f);
      const OpenedSource& now = opened[i];
      if (saved.size() != now.files.size())
        throw Error(ErrorCode::kInvalidState, "sources[" + std::to_string(i) + "] ('" + names[i] + "')",
                    "reads " + std::to_string(now.files.size()) + " data file(s) here but read " + std::to_string(saved.size()) +
                        " when the state was saved (the first then: " + (saved.empty() ? std::string("none") : saved[0].path) +
                        "): files were added or removed, and resuming would read other data; restore the state with "
                        "the files it was saved with, or start a fresh run without the state");
      bool same = true;
      for (size_t k = 0; k < saved.size(); ++k) same = same && saved[k].same_content(now.files[k]);
      if (same) continue;
      // Units of matching: one path entry's files (a Megatron prefix is its .idx and .bin).
      const size_t per = now.files.size() / now.paths.size(), units = now.paths.size();
      auto key = [per](const std::vector<DataFileFingerprint>& v, size_t u) {
        std::string k;
        for (size_t j = u * per; j < (u + 1) * per; ++j) k += std::to_string(v[j].size) + ":" + std::to_string(v[j].content_hash) + ";";
        return k;
      };
      std::map<std::string, std::vector<size_t>> available;  // content -> current units, last first
      for (size_t u = units; u-- > 0;) available[key(now.files, u)].push_back(u);
      std::vector<size_t> order(units), unmatched;
      std::vector<bool> taken(units, false);
      for (size_t u = 0; u < units; ++u) {
        auto it = available.find(key(saved, u));
        if (it == available.end() || it->second.empty()) {
          unmatched.push_back(u);
          continue;
        }
        order[u] = it->second.back();
        taken[order[u]] = true;
        it->second.pop_back();
      }
      if (!unmatched.empty()) changed_file(i, saved, unmatched[0], per, taken);
      std::vector<std::string> paths;
      for (size_t u = 0; u < units; ++u) paths.push_back(now.paths[order[u]]);
      size_t moved = 0;
      while (moved + 1 < units && order[moved] == moved) ++moved;
      std::fprintf(stderr,
                   "groupmates: source '%s': its files match the saved state by content but are listed in another "
                   "order (renamed?): reading them in the saved order (e.g. %s as file %zu, saved as %s)\n",
                   names[i].c_str(), paths[moved].c_str(), moved, saved[moved * per].path.c_str());
      open_source(i, std::move(paths));
      reopened = true;
    }
    if (reopened) compute_fingerprints();
  }

  // Saved unit `u` of source i matches no file now: names the file it most likely became (the
  // unmatched one at the saved path, else at its position, else the first unmatched) and what changed.
  [[noreturn]] void changed_file(size_t i, const std::vector<DataFileFingerprint>& saved, size_t u, size_t per,
                                 const std::vector<bool>& taken) const {
    const OpenedSource& now = opened[i];
    size_t c = now.paths.size();
    for (size_t v = 0; v < now.paths.size() && c == now.paths.size(); ++v)
      if (!taken[v] && now.files[v * per].path == saved[u * per].path) c = v;
    if (c == now.paths.size() && !taken[u]) c = u;
    for (size_t v = 0; v < now.paths.size() && c == now.paths.size(); ++v)
      if (!taken[v]) c = v;
    size_t j = 0;
    while (j + 1 < per && saved[u * per + j].same_content(now.files[c * per + j])) ++j;
    const DataFileFingerprint& was = saved[u * per + j];
    const DataFileFingerprint& is = now.files[c * per + j];
    const std::string then = was.path == is.path ? "" : " (then at " + was.path + ")";
    const std::string why = "; files are matched by content (size and sampled blocks), and no file of source '" + names[i] +
                            "' matches this one of the state" + then +
                            ": it changed, and resuming would read other data; restore the original file, or start a "
                            "fresh run without the state";
    if (is.size != was.size)
      throw Error(ErrorCode::kInvalidState, is.path,
                  "the file is " + std::to_string(is.size) + " bytes but was " + std::to_string(was.size) +
                      " when the state was saved" + why);
    throw Error(ErrorCode::kInvalidState, is.path,
                "the file has the same size but other content than when the state was saved (" + std::to_string(is.size) +
                    " bytes; the XXH3 of its sampled 4 KiB blocks is " + hex64(is.content_hash) + ", was " +
                    hex64(was.content_hash) + ": it was replaced or rewritten)" + why);
  }

  // A version 1 state (files matched by path, config_fingerprint covering the paths).
  void check_files_by_path(const LoaderState& s) const {
    const std::string v1 = "; this state is version 1 (saved by an earlier groupmates), which identifies data files by "
                           "path: restore it with the data at the paths it was saved with, save a new state (version 2 "
                           "identifies files by content and survives moves), or start a fresh run without the state";
    for (size_t i = 0; i < s.files.size(); ++i) {
      const DataFileFingerprint& was = s.files[i];
      const DataFileFingerprint* now = nullptr;
      for (const auto& o : opened)
        for (const auto& f : o.files)
          if (f.path == was.path && now == nullptr) now = &f;
      const std::string field = "LoaderState.files[" + std::to_string(i) + "]";
      if (now == nullptr)
        throw Error(ErrorCode::kInvalidState, was.path,
                    "the state was saved reading this file, which this config does not read (" + field + ")" + v1);
      if (now->size != was.size)
        throw Error(ErrorCode::kInvalidState, was.path,
                    "the file is " + std::to_string(now->size) + " bytes but was " + std::to_string(was.size) +
                        " when the state was saved: it changed, and resuming would read other data" + v1);
      if (now->content_hash != was.content_hash)
        throw Error(ErrorCode::kInvalidState, was.path,
                    "the file has the same size but other content than when the state was saved (sampled-block "
                    "fingerprint differs): it was replaced or rewritten, and resuming would read other data" + v1);
    }
    if (s.config_fingerprint != path_fingerprint)
      throw Error(ErrorCode::kInvalidState, "LoaderState.config_fingerprint",
                  "the state was saved with different data or stream settings (sources, their files and paths, seed, "
                  "sequence_length, shuffle, shuffle_block/shuffle_span, packing, eos/pad ids, weights): restore it with the "
                  "same config" + auto_shuffle_hint() + v1);
  }

  // For a refused state when kShuffleBlockAuto chose a local shuffle: what it depends on, and how to
  // restore a state saved before auto.
  std::string auto_shuffle_hint() const {
    if (config.shuffle_block != kShuffleBlockAuto) return "";
    for (size_t i = 0; i < opened.size(); ++i) {
      if (opened[i].shuffle.block > 0)
        return "; note: shuffle_block is kShuffleBlockAuto (the default), which chose for source '" + names[i] +
               "' a local shuffle of blocks of " + std::to_string(opened[i].shuffle.block) + " documents and spans of " +
               std::to_string(opened[i].shuffle.span) + " blocks from its zstd frames and zstd_cache_bytes (keep "
               "zstd_cache_bytes as saved); a state saved with the global shuffle (the default before auto) restores "
               "with shuffle_block = 0";
    }
    return "";
  }

  void restore(const LoaderState& s) {
    if (s.sources.size() != cursors.size())
      throw Error(ErrorCode::kInvalidState, "LoaderState.sources", "saved with " + std::to_string(s.sources.size()) + " sources, config has " + std::to_string(cursors.size()));
    if (s.version == 1) {
      check_files_by_path(s);
    } else {
      match_files(s);
      if (s.config_fingerprint != fingerprint)
        throw Error(ErrorCode::kInvalidState, "LoaderState.config_fingerprint",
                    "the state was saved with different data or stream settings (sources, their files' content and "
                    "order, seed, sequence_length, shuffle, shuffle_block/shuffle_span, packing, eos/pad ids, weights): "
                    "restore it with the same config" + auto_shuffle_hint());
    }
    // Another global batch size (ranks, or batch-size ramp-up) continues at the same stream position:
    // the next global batch takes the next global_batch_size() candidates after the `samples` consumed.
    if (config.epochs > 0 && (s.pass > config.epochs || (s.pass == config.epochs && !s.ended)))
      throw Error(ErrorCode::kInvalidState, "LoaderState.pass",
                  "is " + std::to_string(s.pass) + " but the config has epochs = " + std::to_string(config.epochs) +
                      " (a state past the last pass can only be an ended one): the state was edited or belongs to another config");
    if (s.blend_counts.size() != cursors.size())
      throw Error(ErrorCode::kInvalidState, "LoaderState.blend",
                  "has " + std::to_string(s.blend_counts.size()) + " counts, the config has " +
                      std::to_string(cursors.size()) + " sources: the state was edited or belongs to another config");
    if (s.batches > s.samples || s.samples > UINT64_MAX / 2)
      throw Error(ErrorCode::kInvalidState, "LoaderState.batches",
                  "is " + std::to_string(s.batches) + " global batches of " + std::to_string(s.samples) +
                      " samples in all (each batch has at least one; at most 2^63 samples): the state was edited");
    blend.set_counts(s.blend_counts);
    for (size_t i = 0; i < cursors.size(); ++i)
      cursors[i]->load({s.sources[i].epoch, s.sources[i].position, s.sources[i].offset});
    skips.reset(s.skipped);
    pass = s.pass;
    plan_batch_index = s.batches;
    plan_samples = s.samples;
    plan_ended = s.ended;
    next_index = s.batches;
    current = s;
  }

  // The next candidate of the global stream, or nullopt when the stream has ended.
  std::optional<CandidatePlan> next_candidate() {
    for (;;) {
      const uint32_t s = blend.peek();
      if (auto plan = cursors[s]->next()) {
        blend.commit(s);
        return plan;
      }
      const bool recycle = config.sources[s].on_exhausted == OnExhausted::kRecycle;
      if (recycle) {
        cursors[s]->start_epoch(cursors[s]->save().epoch + 1);
        if (auto plan = cursors[s]->next()) {
          blend.commit(s);
          return plan;
        }
        throw Error(ErrorCode::kCorruptData, names[s],
                    "source has no complete candidate of " + std::to_string(config.row_length()) +
                        " tokens in a whole epoch (all documents skipped or too short?)");
      }
      // A source that ends has run out: the pass is over.
      ++pass;
      if (config.epochs > 0 && pass >= config.epochs) return std::nullopt;
      blend.reset();
      for (auto& c : cursors) c->start_epoch(c->save().epoch + 1);
      // Guard against a source that yields nothing in a fresh epoch.
      const uint32_t t = blend.peek();
      auto plan = cursors[t]->next();
      if (!plan)
        throw Error(ErrorCode::kCorruptData, names[t],
                    "source has no complete candidate of " + std::to_string(config.row_length()) +
                        " tokens in a whole epoch (all documents skipped or too short?)");
      blend.commit(t);
      return plan;
    }
  }

  // This rank's rows of the next global batch, or nullopt when the stream ended (a partial
  // global batch at the very end is dropped and counted).
  std::optional<std::vector<CandidatePlan>> plan_batch(bool keep_rows = true) {
    const uint64_t gb = global_batch_size();
    const uint64_t lo = uint64_t{config.rank} * config.batch_size, hi = lo + config.batch_size;
    std::vector<CandidatePlan> rows;
    rows.reserve(config.batch_size);
    for (uint64_t i = 0; i < gb; ++i) {
      auto plan = next_candidate();
      if (!plan) {
        if (i > 0) skips.add("stream", "final_partial_global_batch_candidates", "end of stream", i);
        return std::nullopt;
      }
      if (keep_rows && i >= lo && i < hi) rows.push_back(std::move(*plan));
    }
    return rows;
  }

  void assemble(uint64_t index, std::vector<CandidatePlan> rows, LoaderState state_after) {
    Slot slot;
    try {
      HostBatch b;
      b.batch_size = config.batch_size;
      b.sequence_length = config.row_length();
      b.index = index;
      b.tokens = buffers->acquire();
      const uint64_t T = config.row_length();
      for (size_t r = 0; r < rows.size(); ++r) {
        int64_t* row = b.tokens.get() + r * T;
        uint64_t pos = 0;
        for (const Segment& seg : rows[r].segments) {
          if (seg.fill_count > 0) {
            std::fill(row + pos, row + pos + seg.fill_count, seg.fill);
            pos += seg.fill_count;
            continue;
          }
          widen_view(seg.tokens, row + pos);
          if (config.vocab_size > 0 && !in_vocab(row + pos, seg.tokens.size, config.vocab_size))
            out_of_vocab(rows[r].id.source, seg, row + pos);
          pos += seg.tokens.size;
        }
        b.ids.push_back(rows[r].id);
      }
      throw_if_mapping_faulted();  // a data file shrank under its map: never emit the zeros read
      slot.batch = std::move(b);
      slot.state_after = std::move(state_after);
    } catch (...) {
      slot.error = std::current_exception();
    }
    put(index, std::move(slot));
  }

  [[noreturn]] void out_of_vocab(uint32_t source, const Segment& seg, const int64_t* widened) const {
    for (uint64_t i = 0; i < seg.tokens.size; ++i) {
      if (widened[i] < 0 || widened[i] >= static_cast<int64_t>(config.vocab_size)) {
        throw Error(ErrorCode::kOutOfVocab, cursors[source]->locate(seg.document, seg.offset + i),
                    "token id " + std::to_string(widened[i]) + " is outside the vocabulary [0, " +
                        std::to_string(config.vocab_size) + "): set vocab_size to the tokenizer's size, or find "
                        "every bad id with `groupmates inspect --vocab-size " + std::to_string(config.vocab_size) + "`");
      }
    }
    throw Error(ErrorCode::kInternal, "", "out_of_vocab called without a bad token");
  }

  void put(uint64_t index, Slot slot) {
    slot.ready = true;
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mu);
      slots[index] = std::move(slot);
      wake = consumer_waits_for == index;
    }
    if (wake) consumer_cv.notify_one();
  }

  // The planner refills in bursts: it sleeps until half the prefetch window is free (fewer
  // wake-ups per batch), then plans until the window is full.
  uint32_t low_water() const { return config.prefetch_batches / 2; }

  // The first global batch >= g that this reader returns.
  uint64_t next_mine(uint64_t g) const {
    const uint64_t k = config.reader_count;
    return g + (config.reader_index + k - g % k) % k;
  }

  void run_planner() {
    uint64_t index = plan_batch_index;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu);
        if (!stop && in_flight >= config.prefetch_batches) {
          planner_waiting = true;
          planner_cv.wait(lock, [&] { return stop || in_flight <= low_water(); });
          planner_waiting = false;
        }
        if (stop) return;
        ++in_flight;
      }
      Slot end_slot;
      const uint64_t slot_index = next_mine(index);  // where the consumer waits next
      try {
        // Other readers' batches: planned (the global position advances), never read.
        while (!plan_ended && index < slot_index) {
          if (plan_batch(false)) {
            ++plan_batch_index;
            plan_samples += global_batch_size();
            ++index;
          } else {
            plan_ended = true;
          }
        }
        if (plan_ended) {
          end_slot.end = true;
          end_slot.state_after = snapshot();
          put(slot_index, std::move(end_slot));
          return;
        }
        auto rows = plan_batch();
        if (!rows) {
          plan_ended = true;
          end_slot.end = true;
          end_slot.state_after = snapshot();
          put(slot_index, std::move(end_slot));
          return;
        }
        ++plan_batch_index;
        plan_samples += global_batch_size();
        LoaderState after = snapshot();
        pool.post([this, index, rows = std::move(*rows), after = std::move(after)]() mutable {
          assemble(index, std::move(rows), std::move(after));
        });
      } catch (...) {
        end_slot.error = std::current_exception();
        put(slot_index, std::move(end_slot));
        return;
      }
      ++index;
    }
  }

  bool started = false;
  void start() {
    started = true;
    next_index = next_mine(next_index);
    planner = std::thread([this] { run_planner(); });
  }

  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    planner_cv.notify_all();
    if (planner.joinable()) planner.join();
    pool.stop_and_join();  // queued read-ahead/assembly tasks are dropped; running ones finish
  }

  std::optional<HostBatch> next() {
    if (failed) std::rethrow_exception(failed);
    if (!started) start();  // lazily: a loader never read starts no thread
    if (ended) return std::nullopt;
    Slot slot;
    bool wake_planner = false;
    {
      std::unique_lock<std::mutex> lock(mu);
      auto ready = [&] {
        auto it = slots.find(next_index);
        return it != slots.end() && it->second.ready;
      };
      if (!ready()) {
        const util::Stopwatch waited;
        consumer_waits_for = next_index;
        consumer_cv.wait(lock, ready);
        consumer_waits_for = UINT64_MAX;
        wait_seconds += waited.seconds();
      }
      auto it = slots.find(next_index);
      slot = std::move(it->second);
      slots.erase(it);
      --in_flight;
      wake_planner = planner_waiting && in_flight <= low_water();
    }
    if (wake_planner) planner_cv.notify_one();
    if (slot.error) {
      failed = slot.error;
      std::rethrow_exception(failed);
    }
    current = std::move(slot.state_after);
    if (slot.end) {
      ended = true;
      return std::nullopt;
    }
    next_index = next_mine(next_index + 1);
    ++batches_returned;
    return std::move(slot.batch);
  }
};

StreamingLoader::StreamingLoader(LoaderConfig config, BufferAllocator allocator)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(allocator))) {
  impl_->current = impl_->snapshot();
}

StreamingLoader::StreamingLoader(LoaderConfig config, const LoaderState& state, BufferAllocator allocator)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(allocator))) {
  impl_->restore(state);
}

StreamingLoader::~StreamingLoader() { impl_->shutdown(); }

std::optional<HostBatch> StreamingLoader::next() { return impl_->next(); }

LoaderState StreamingLoader::state() const { return impl_->current; }

std::map<std::string, uint64_t> StreamingLoader::skipped() const { return impl_->current.skipped; }

std::string StreamingLoader::skip_report() const {
  return SkipCounters::report(impl_->current.skipped, impl_->skips.examples());
}

LoaderStats StreamingLoader::stats() const {
  LoaderStats s;
  s.batches = impl_->batches_returned;
  s.buffers_allocated = impl_->buffers->allocated();
  s.consumer_wait_seconds = impl_->wait_seconds;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    s.batches_in_flight = impl_->in_flight;
  }
  for (const auto& c : impl_->cursors) {
    const SourceCacheStats cs = c->cache_stats();
    s.line_index_cache_hits += cs.line_index_hits;
    s.line_index_cache_misses += cs.line_index_misses;
    s.zstd_frame_cache_hits += cs.frame_hits;
    s.zstd_frame_cache_misses += cs.frame_misses;
    s.zstd_frame_cache_bytes += cs.frame_bytes;
  }
  return s;
}

const LoaderConfig& StreamingLoader::config() const { return impl_->config; }

uint64_t StreamingLoader::config_fingerprint() const { return impl_->fingerprint; }

std::vector<std::pair<uint32_t, uint32_t>> StreamingLoader::local_shuffles() const {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  for (const auto& o : impl_->opened) out.emplace_back(o.shuffle.block, o.shuffle.block > 0 ? o.shuffle.span : 0);
  return out;
}

}  // namespace groupmates
