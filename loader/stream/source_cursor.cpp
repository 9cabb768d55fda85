#include "stream/source_cursor.h"

#include <deque>
#include <type_traits>
#include <future>
#include <new>
#include <xxhash.h>

#include "sources/document_source.h"
#include "groupmates/error.h"
#include "util/fault_hooks.h"
#include "util/lazy_thread_pool.h"
#include "util/permutation.h"
#include "sources/token_file_source.h"

namespace groupmates {

uint64_t candidate_hash(const std::string& source_name, uint64_t document, uint64_t offset) {
  const uint64_t words[2] = {document, offset};
  return XXH3_64bits_withSeed(words, sizeof(words), XXH3_64bits(source_name.data(), source_name.size()));
}

namespace {

CandidateId make_id(const CursorContext& ctx, uint64_t document, uint64_t offset) {
  CandidateId id;
  id.source = ctx.source_index;
  id.document = document;
  id.offset = offset;
  id.hash = candidate_hash(ctx.source_name, document, offset);
  return id;
}

// ---------------------------------------------------------------------------------------------
// What both cursors share: a seeded permutation of the source's units (windows or documents) per
// epoch, the position in it, and save/load of that position. Derived constructors call
// start_epoch(0) (a base constructor cannot reach their reset()).
template <typename Source>
class PermutedCursor : public SourceCursor {
 public:
  PermutedCursor(std::shared_ptr<const Source> source, CursorContext ctx, uint64_t units, const char* unit)
      : source_(std::move(source)), ctx_(std::move(ctx)), units_(units), unit_(unit), perm_(units, 0, false) {}

  void start_epoch(uint64_t epoch) override {
    epoch_ = epoch;
    position_ = 0;
    reset();
    const uint64_t seed = derive_seed(ctx_.seed, ctx_.source_index, epoch);
    if constexpr (std::is_base_of_v<DocumentSource, Source>) {
      if (ctx_.shuffle && ctx_.shuffle_block > 0) {  // a local shuffle (LoaderConfig::shuffle_block)
        perm_ = Permutation::blocked(units_, seed, ctx_.shuffle_block, ctx_.shuffle_span);
        return;
      }
    }
    perm_ = Permutation(units_, seed, ctx_.shuffle);
  }

  CursorState save() const override { return {epoch_, position_, offset()}; }

  void load(const CursorState& state) override {
    start_epoch(state.epoch);
    if (state.position > perm_.size())
      throw Error(ErrorCode::kInvalidState, ctx_.source_name,
                  "saved " + std::string(unit_) + " position " + std::to_string(state.position) +
                      " is past the source's " + std::to_string(perm_.size()) + " " + unit_ +
                      "s; the data changed since the state was saved");
    position_ = state.position;
    resume(state);
  }

  uint64_t fingerprint() const override { return source_->fingerprint(); }
  uint64_t path_fingerprint() const override { return source_->path_fingerprint(); }
  std::vector<DataFileFingerprint> data_files() const override { return source_->data_files(); }
  SourceCacheStats cache_stats() const override {
    if constexpr (std::is_base_of_v<DocumentSource, Source>) return source_->cache_stats();
    return {};
  }

 protected:
  /// Start of an epoch: the derived cursor's own position goes back too.
  virtual void reset() {}
  /// After load() set the position: the rest of the saved state.
  virtual void resume(const CursorState&) {}
  /// Tokens of the current unit already used (saved with the position).
  virtual uint64_t offset() const { return 0; }

  std::shared_ptr<const Source> source_;
  CursorContext ctx_;
  uint64_t units_;
  const char* unit_;  // "window" / "document", for messages
  Permutation perm_;
  uint64_t epoch_ = 0;
  uint64_t position_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Flat token files: window k of the seeded permutation of all windows.
class WindowCursor : public PermutedCursor<TokenFileSource> {
 public:
  WindowCursor(std::shared_ptr<const TokenFileSource> source, CursorContext ctx)
      : PermutedCursor(source, std::move(ctx), source->num_windows(), "window") {
    start_epoch(0);
  }

  std::optional<CandidatePlan> next() override {
    if (position_ >= perm_.size()) {
      // The files' tails shorter than a window are the epoch's tail, as for documents.
      if (!tail_counted_ && source_->tail_tokens() > 0 && ctx_.skips)
        ctx_.skips->add(ctx_.source_name, "epoch_tail_tokens", "end of epoch " + std::to_string(epoch_),
                        source_->tail_tokens());
      tail_counted_ = true;
      return std::nullopt;
    }
    const uint64_t k = perm_.at(position_++);
    const auto where = source_->locate(k);
    CandidatePlan plan;
    plan.id = make_id(ctx_, where.first, where.second);
    Segment seg;
    seg.tokens = source_->window(k);
    seg.document = where.first;
    seg.offset = where.second;
    plan.segments.push_back(std::move(seg));
    return plan;
  }

  std::string locate(uint64_t document, uint64_t offset) const override {
    return source_->path(static_cast<uint32_t>(document)) + ":token " + std::to_string(offset);
  }

 private:
  void reset() override { tail_counted_ = false; }
  void resume(const CursorState& state) override {
    tail_counted_ = false;
    if (state.offset != 0)
      throw Error(ErrorCode::kInvalidState, "LoaderState.sources[" + std::to_string(ctx_.source_index) + "].offset",
                  "is " + std::to_string(state.offset) + " but source '" + ctx_.source_name +
                      "' is a token file source (whole windows: always 0); the state was edited or belongs to another config");
  }

  bool tail_counted_ = false;
};

// ---------------------------------------------------------------------------------------------
// Documents (Megatron, JSONL): a seeded permutation of documents; each document plus its EOS is
// a "unit"; packed mode cuts the concatenated units every T tokens, aligned mode cuts each unit
// separately and pads its tail. Documents are read ahead on the pool; skip counts are merged
// when a document is consumed, so prefetched-but-unused documents are never counted.
struct ReadResult {
  Document doc;
  std::shared_ptr<SkipCounters> skips;  // what reading this document skipped
};

class DocumentCursor : public PermutedCursor<DocumentSource> {
 public:
  DocumentCursor(std::shared_ptr<const DocumentSource> source, CursorContext ctx)
      : PermutedCursor(source, std::move(ctx), source->num_documents(), "document") {
    start_epoch(0);
  }

  std::optional<CandidatePlan> next() override {
    const uint64_t T = ctx_.sequence_length;
    CandidatePlan plan;
    uint64_t filled = 0;
    bool have_id = false;
    while (filled < T) {
      const Document* doc = unit_at(position_);
      if (doc == nullptr) {  // epoch exhausted: the partial candidate is the epoch's tail
        if (filled > 0 && ctx_.skips) ctx_.skips->add(ctx_.source_name, "epoch_tail_tokens", "end of epoch " + std::to_string(epoch_), filled);
        return std::nullopt;
      }
      const uint64_t doc_len = doc->tokens.size;
      const uint64_t unit_len = doc_len + (ctx_.eos_id >= 0 ? 1 : 0);
      const uint64_t document = perm_.at(position_);
      if (offset_ >= unit_len)  // only a restored offset can be out of range
        throw Error(ErrorCode::kInvalidState, "LoaderState.sources[" + std::to_string(ctx_.source_index) + "].offset",
                    "is " + std::to_string(offset_) + " but document " + source_->locate(document) + " has only " +
                        std::to_string(unit_len) + " tokens (with its EOS); the state was edited or the data changed");
      if (!have_id) {
        plan.id = make_id(ctx_, document, offset_);
        have_id = true;
      }
      const uint64_t take = std::min<uint64_t>(unit_len - offset_, T - filled);
      // Document tokens in [offset_, offset_ + take), then (maybe) the EOS.
      if (offset_ < doc_len) {
        const uint64_t n = std::min<uint64_t>(take, doc_len - offset_);
        Segment seg;
        seg.tokens = doc->tokens.slice(offset_, n);
        seg.document = document;
        seg.offset = offset_;
        plan.segments.push_back(std::move(seg));
      }
      if (offset_ + take > doc_len) {
        Segment eos;
        eos.fill = ctx_.eos_id;
        eos.fill_count = 1;
        eos.document = document;
        eos.offset = doc_len;
        plan.segments.push_back(eos);
      }
      filled += take;
      offset_ += take;
      if (offset_ == unit_len) {
        ++position_;
        offset_ = 0;
      }
      if (ctx_.packing == PackingMode::kDocumentAligned && filled < T) {
        // The unit ended before the window did: pad, and the next window starts a new document.
        Segment pad;
        pad.fill = ctx_.pad_id;
        pad.fill_count = T - filled;
        pad.document = document;
        pad.offset = unit_len;
        plan.segments.push_back(pad);
        filled = T;
      }
    }
    return plan;
  }

  std::string locate(uint64_t document, uint64_t offset) const override {
    return source_->locate(document) + ", token " + std::to_string(offset);
  }

 private:
  void reset() override {
    offset_ = 0;
    ahead_.clear();
    ahead_base_ = 0;
  }

  void resume(const CursorState& state) override {
    offset_ = state.offset;
    ahead_base_ = position_;
  }

  uint64_t offset() const override { return offset_; }

  // The first non-empty, non-skipped document at or after position `p` (advancing position_),
  // or nullptr at the end of the epoch.
  const Document* unit_at(uint64_t p) {
    while (p < perm_.size()) {
      ReadResult& r = fetch(p);
      if (!r.doc.skipped && (r.doc.tokens.size > 0 || ctx_.eos_id >= 0)) {
        if (r.skips) merge_skips(r);
        return &r.doc;
      }
      if (r.skips) merge_skips(r);
      if (!r.doc.skipped && ctx_.skips) ctx_.skips->add(ctx_.source_name, "empty_document", source_->locate(perm_.at(p)));
      position_ = ++p;
      offset_ = 0;
    }
    return nullptr;
  }

  void merge_skips(ReadResult& r) {
    if (ctx_.skips) {
      const auto counts = r.skips->counts();
      const auto examples = r.skips->examples();
      for (const auto& kv : counts) {
        const auto slash = kv.first.find('/');
        ctx_.skips->add(kv.first.substr(0, slash), kv.first.substr(slash + 1), examples.at(kv.first), kv.second);
      }
    }
    r.skips.reset();
  }

  ReadResult& fetch(uint64_t p) {
    while (!ahead_.empty() && ahead_base_ < p) {
      ahead_.pop_front();
      ++ahead_base_;
    }
    if (ahead_.empty()) ahead_base_ = p;
    const uint64_t want_end = std::min<uint64_t>(perm_.size(), p + std::max<uint32_t>(1, ctx_.read_ahead));
    while (ahead_base_ + ahead_.size() < want_end) submit(ahead_base_ + ahead_.size());
    Slot& slot = ahead_.front();
    if (!slot.ready) {
      slot.result = slot.future.get();  // rethrows a read error of this document
      slot.ready = true;
    }
    return slot.result;
  }

  void submit(uint64_t p) {
    const uint64_t document = perm_.at(p);
    auto promise = std::make_shared<std::promise<ReadResult>>();
    Slot slot;
    slot.future = promise->get_future();
    auto source = source_;
    auto read = [source, document, promise, name = source_name_]() {
      try {
        if (fault_hooks::before_document_read) fault_hooks::before_document_read(*name, document);
        ReadResult r;
        r.skips = std::make_shared<SkipCounters>();
        r.doc = source->read(document, *r.skips);
        if (r.skips->total() == 0) r.skips.reset();
        promise->set_value(std::move(r));
      } catch (const Error&) {
        promise->set_exception(std::current_exception());
      } catch (const std::bad_alloc&) {  // out of memory: not the disk's fault; passed on as it is
        promise->set_exception(std::current_exception());
      } catch (const std::exception& e) {  // not ours (the C++ library, a tokenizer): say which document
        promise->set_exception(std::make_exception_ptr(Error(ErrorCode::kIo, source->locate(document),
            std::string("reading this document failed: ") + e.what() +
                " (the loader stops here; fix the cause and resume from the last saved state)")));
      } catch (...) {
        promise->set_exception(std::make_exception_ptr(Error(ErrorCode::kIo, source->locate(document),
            "reading this document failed with an unknown exception (the loader stops here; resume from the last "
            "saved state)")));
      }
    };
    if (ctx_.pool != nullptr)
      ctx_.pool->post(std::move(read));
    else
      read();
    ahead_.push_back(std::move(slot));
  }

  // The source's name, shared with the read tasks (the fault hook's argument) without a copy per document.
  const std::shared_ptr<const std::string> source_name_ = std::make_shared<const std::string>(ctx_.source_name);

  struct Slot {
    std::future<ReadResult> future;
    ReadResult result;
    bool ready = false;
  };

  uint64_t offset_ = 0;
  std::deque<Slot> ahead_;
  uint64_t ahead_base_ = 0;
};

}  // namespace

std::unique_ptr<SourceCursor> make_window_cursor(std::shared_ptr<const TokenFileSource> source, CursorContext ctx) {
  return std::make_unique<WindowCursor>(std::move(source), std::move(ctx));
}

std::unique_ptr<SourceCursor> make_document_cursor(std::shared_ptr<const DocumentSource> source, CursorContext ctx) {
  return std::make_unique<DocumentCursor>(std::move(source), std::move(ctx));
}

}  // namespace groupmates
