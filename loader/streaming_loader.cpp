// The plain streaming loader. Threads and who owns what:
//   * the planner thread walks the global candidate stream (blend -> source cursors), keeps this
//     rank's rows, snapshots the state after each global batch, and posts one assembly task per
//     batch to the pool; at most prefetch_batches batches are planned and not yet consumed;
//   * pool threads (boost::asio::thread_pool) read/tokenize documents ahead for the cursors and
//     assemble batches (copy + widen tokens into a pooled buffer); they never block;
//   * the consumer (next()) takes batches strictly in order from the reorder slots.
// With reader_count = k > 1 (e.g. k DataLoader worker processes of one rank), this loader plans
// every global batch (the stream and its state stay global) but reads, assembles and returns only
// the batches g with g % k == reader_index.
#include "groupmates/streaming_loader.h"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <algorithm>
#include <condition_variable>
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
  uint64_t fingerprint = 0;
  std::vector<DataFileFingerprint> files;  // every data file, in source order (saved in the state)
  boost::asio::thread_pool pool;
  std::shared_ptr<BufferPool> buffers;

  // Planner-owned position in the global stream.
  uint64_t pass = 0;
  uint64_t plan_batch_index = 0;
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

  void open_sources() {
    uint64_t h = XXH3_64bits_withSeed(&config.seed, sizeof(config.seed), 0x67726f7570ULL);
    auto mix = [&h](uint64_t v) { h = XXH3_64bits_withSeed(&v, sizeof(v), h); };
    mix(config.row_length());
    mix(config.shuffle);
    mix(static_cast<uint64_t>(config.packing));
    mix(static_cast<uint64_t>(config.eos_id));
    mix(static_cast<uint64_t>(config.pad_id));
    for (size_t i = 0; i < config.sources.size(); ++i) {
      SourceConfig sc = config.sources[i];
      sc.name = source_name(config, i);  // readers label their skip counters with it
      sc.paths = expand_paths(sc.paths, sc.format, "sources[" + std::to_string(i) + "].paths");
      CursorContext ctx;
      ctx.source_index = static_cast<uint32_t>(i);
      ctx.source_name = source_name(config, i);
      ctx.seed = config.seed;
      ctx.shuffle = config.shuffle;
      ctx.sequence_length = config.row_length();
      ctx.packing = config.packing;
      // append_eos false: the documents end with their own EOS; else the source's id or the loader's.
      ctx.eos_id = !sc.append_eos ? -1 : sc.eos_id == kLoaderEosId ? config.eos_id : sc.eos_id;
      ctx.pad_id = config.pad_id;
      ctx.read_ahead = config.tokenize_ahead;
      ctx.pool = &pool;
      ctx.skips = &skips;
      names.push_back(ctx.source_name);
      if (sc.format == SourceFormat::kTokenFile) {
        auto src = std::make_shared<const TokenFileSource>(sc, config.row_length());
        if (src->num_windows() == 0)
          throw Error(ErrorCode::kCorruptData, sc.paths[0],
                      "source '" + ctx.source_name + "' has no complete window of " + std::to_string(config.row_length()) +
                          " tokens (sequence_length, +1 with labels): use longer files or a shorter sequence_length");
        cursors.push_back(make_window_cursor(src, ctx));
      } else {
        std::shared_ptr<const DocumentSource> src = open_document_source(sc, config.bad_input);
        cursors.push_back(make_document_cursor(src, ctx));
      }
      mix(cursors.back()->fingerprint());
      for (auto& f : cursors.back()->data_files()) files.push_back(std::move(f));
      mix(XXH3_64bits(ctx.source_name.data(), ctx.source_name.size()));
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
    fingerprint = h;
  }

  uint64_t global_batch_size() const { return uint64_t{config.batch_size} * config.world_size; }

  LoaderState snapshot() {
    LoaderState s;
    s.config_fingerprint = fingerprint;
    s.global_batch_size = global_batch_size();
    s.batches = plan_batch_index;
    s.pass = pass;
    s.ended = plan_ended;
    s.blend_counts = blend.counts();
    for (const auto& c : cursors) {
      const CursorState cs = c->save();
      s.sources.push_back({cs.epoch, cs.position, cs.offset});
    }
    s.skipped = skips.counts();
    s.files = files;
    return s;
  }

  // A data file changed since `s` was saved: named, with what changed (states saved before file
  // fingerprints existed have none and are checked by config_fingerprint alone).
  void check_files(const LoaderState& s) const {
    for (size_t i = 0; i < s.files.size(); ++i) {
      const DataFileFingerprint& was = s.files[i];
      const auto now = std::find_if(files.begin(), files.end(), [&](const DataFileFingerprint& f) { return f.path == was.path; });
      const std::string field = "LoaderState.files[" + std::to_string(i) + "]";
      if (now == files.end())
        throw Error(ErrorCode::kInvalidState, was.path,
                    "the state was saved reading this file, which this config does not read (" + field +
                        "): restore it with the config it was saved with");
      if (now->size != was.size)
        throw Error(ErrorCode::kInvalidState, was.path,
                    "the file is " + std::to_string(now->size) + " bytes but was " + std::to_string(was.size) +
                        " when the state was saved: it changed, and resuming would read other data; restore the "
                        "original file, or start a fresh run without the state");
      if (now->content_hash != was.content_hash)
        throw Error(ErrorCode::kInvalidState, was.path,
                    "the file has the same size but other content than when the state was saved (sampled-block "
                    "fingerprint differs): it was replaced or rewritten, and resuming would read other data; "
                    "restore the original file, or start a fresh run without the state");
    }
  }

  void restore(const LoaderState& s) {
    check_files(s);
    if (s.config_fingerprint != fingerprint)
      throw Error(ErrorCode::kInvalidState, "LoaderState.config_fingerprint",
                  "the state was saved with different data or stream settings (sources, their files, seed, "
                  "sequence_length, shuffle, packing, eos/pad ids, weights): restore it with the same config");
    if (s.global_batch_size != global_batch_size())
      throw Error(ErrorCode::kInvalidState, "LoaderState.global_batch_size",
                  "the state was saved with global batch size " + std::to_string(s.global_batch_size) +
                      " (batch_size * world_size), this config has " + std::to_string(global_batch_size()) +
                      ": resuming on another number of ranks is exact only with the same global batch size; "
                      "set batch_size = " + std::to_string(s.global_batch_size) + " / world_size");
    if (s.sources.size() != cursors.size())
      throw Error(ErrorCode::kInvalidState, "LoaderState.sources", "saved with " + std::to_string(s.sources.size()) + " sources, config has " + std::to_string(cursors.size()));
    if (config.epochs > 0 && (s.pass > config.epochs || (s.pass == config.epochs && !s.ended)))
      throw Error(ErrorCode::kInvalidState, "LoaderState.pass",
                  "is " + std::to_string(s.pass) + " but the config has epochs = " + std::to_string(config.epochs) +
                      " (a state past the last pass can only be an ended one): the state was edited or belongs to another config");
    if (s.blend_counts.size() != cursors.size())
      throw Error(ErrorCode::kInvalidState, "LoaderState.blend",
                  "has " + std::to_string(s.blend_counts.size()) + " counts, the config has " +
                      std::to_string(cursors.size()) + " sources: the state was edited or belongs to another config");
    if (s.batches > UINT64_MAX / global_batch_size())
      throw Error(ErrorCode::kInvalidState, "LoaderState.batches",
                  "is " + std::to_string(s.batches) + ": batches * global batch size overflows 64 bits; the state was edited");
    blend.set_counts(s.blend_counts);
    for (size_t i = 0; i < cursors.size(); ++i)
      cursors[i]->load({s.sources[i].epoch, s.sources[i].position, s.sources[i].offset});
    skips.reset(s.skipped);
    pass = s.pass;
    plan_batch_index = s.batches;
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
        LoaderState after = snapshot();
        boost::asio::post(pool, [this, index, rows = std::move(*rows), after = std::move(after)]() mutable {
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

  void start() {
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
    pool.stop();  // queued read-ahead/assembly tasks are dropped; running ones finish
    pool.join();
  }

  std::optional<HostBatch> next() {
    if (failed) std::rethrow_exception(failed);
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
  impl_->start();
}

StreamingLoader::StreamingLoader(LoaderConfig config, const LoaderState& state, BufferAllocator allocator)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(allocator))) {
  impl_->restore(state);
  impl_->start();
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
  return s;
}

const LoaderConfig& StreamingLoader::config() const { return impl_->config; }

uint64_t StreamingLoader::config_fingerprint() const { return impl_->fingerprint; }

}  // namespace groupmates
