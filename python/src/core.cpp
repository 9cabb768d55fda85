// groupmates._core: pybind11 bindings of the LibTorch-free streaming core, and of every config and
// stats struct of the package (also those of the selection engine: their headers are LibTorch-free,
// and groupmates._engine uses the classes registered here).
//
// Each struct is bound once, field by field (`Struct`); the bound class lists its fields with their
// C++ kinds in `_fields`, from which groupmates/config.py converts its config classes (and reads
// their defaults) and binding_common.h's plain() turns stats into dicts.
//
// Threads and the GIL: the loader's planner and pool threads are pure C++ and never touch Python.
// Every call that may wait (opening sources, next(), skip(), close()) releases the GIL first and
// only then takes the binding's mutex, so a Python thread blocked here never holds the GIL.
//
// Zero-copy: next() hands the pooled [B, T] int64 buffer to Python as a numpy array whose base is a
// capsule owning the buffer's shared_ptr; groupmates.GroupMatesLoader wraps it with
// torch.from_numpy. The buffer returns to the pool when the last array/tensor over it dies
// (also after the loader is gone: the pool is reference-counted, the buffer is then freed).
//
// Pinned buffers (GroupMatesLoader(pin_memory=True) with CUDA): the pool's buffers are page-aligned
// and page-locked by the CUDA runtime's cudaHostRegister when allocated (cudaHostUnregister before
// they are freed), whose addresses the package passes in (it finds them in the libcudart torch
// loaded: this extension stays free of CUDA and LibTorch). Batches are then views of pinned memory,
// copied to the device asynchronously with no host copy (torch's pin_memory() copies each batch).
// The calls run without the GIL with the loader's device current, as torch's pin-memory thread does
// (a new thread's current device is 0, and a call there would start a CUDA context on GPU 0 in every
// rank's process): page-locking on the loader's threads, after cudaSetDevice; unlocking on whatever
// thread frees the buffer (often the training thread, at close), whose current device is put back.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "groupmates/config.h"
#include "groupmates/error.h"
#include "groupmates/loader_state.h"
#include "groupmates/rank_environment.h"
#include "groupmates/selection_config.h"
#include "groupmates/selection_stats.h"
#include "groupmates/streaming_loader.h"
#include "groupmates/tokenizer.h"
#include "groupmates/training_targets.h"

#include "binding_common.h"

namespace py = pybind11;
namespace gm = groupmates;

namespace {

/// The kind of a field as groupmates/config.py converts it: "bool", "enum", "float", "str",
/// "int<bits>" / "uint<bits>", else "object" (lists, maps, nested structs).
template <typename F>
std::string kind() {
  if constexpr (std::is_same_v<F, bool>) return "bool";
  else if constexpr (std::is_enum_v<F>) return "enum";
  else if constexpr (std::is_integral_v<F>) return (std::is_signed_v<F> ? "int" : "uint") + std::to_string(8 * sizeof(F));
  else if constexpr (std::is_floating_point_v<F>) return "float";
  else if constexpr (std::is_same_v<F, std::string>) return "str";
  else return "object";
}

/// A struct bound field by field: default-constructible, read-write (or read-only) attributes,
/// `_fields` = ((name, kind), ...) in declaration order, and a repr of them all.
template <typename T>
class Struct {
 public:
  Struct(py::module_& m, const char* name, const char* doc, bool readonly = false)
      : cls_(m, name, doc), readonly_(readonly) {
    cls_.def(py::init<>());
  }
  template <typename F>
  Struct& field(const char* name, F T::*member) {
    if (readonly_) cls_.def_readonly(name, member);
    else cls_.def_readwrite(name, member);
    fields_.append(py::make_tuple(name, kind<F>()));
    return *this;
  }
  ~Struct() {
    cls_.attr("_fields") = py::tuple(fields_);
    cls_.def("__repr__", [](py::object self) {
      std::string out = py::str(py::type::handle_of(self).attr("__name__")).cast<std::string>() + "(";
      const char* sep = "";
      for (py::handle f : py::type::handle_of(self).attr("_fields")) {
        py::object name = py::reinterpret_borrow<py::tuple>(f)[0];
        out += sep + name.cast<std::string>() + "=" + py::repr(self.attr(name)).cast<std::string>();
        sep = ", ";
      }
      return out + ")";
    });
  }
  py::class_<T>& cls() { return cls_; }

 private:
  py::class_<T> cls_;
  py::list fields_;
  bool readonly_;
};

// cudaHostRegister / cudaHostUnregister / cudaSetDevice / cudaGetDevice (cudaError_t is an int enum;
// 0 = success), the device they run with, and what the page-locking did.
struct HostPinning {
  using Register = int (*)(void* ptr, size_t bytes, unsigned int flags);
  using Unregister = int (*)(void* ptr);
  using SetDevice = int (*)(int device);
  using GetDevice = int (*)(int* device);
  Register page_lock = nullptr;
  Unregister page_unlock = nullptr;
  SetDevice set_device = nullptr;
  GetDevice get_device = nullptr;
  int device = 0;
  std::atomic<uint64_t> pinned{0}, failed{0};
  std::atomic<int> last_error{0};
};

// Page-aligned buffers, page-locked with `p` (cudaHostRegisterPortable: pinned for every device). A
// buffer the runtime refuses is used unpinned (its batches are then copied synchronously) and counted.
gm::BufferAllocator pinned_allocator(std::shared_ptr<HostPinning> p) {
  return [p](size_t bytes, void** data) -> std::shared_ptr<void> {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t n = (bytes + page - 1) / page * page;
    void* mem = std::aligned_alloc(page, n);
    if (mem == nullptr) throw std::bad_alloc();
    constexpr unsigned int kPortable = 1;  // cudaHostRegisterPortable
    int rc = p->set_device(p->device);  // a loader thread (BufferPool::acquire runs in assemble): left set
    if (rc == 0) rc = p->page_lock(mem, n, kPortable);
    if (rc == 0) {
      p->pinned++;
    } else {
      p->failed++;
      p->last_error = rc;
    }
    *data = mem;
    return std::shared_ptr<void>(mem, [p, locked = rc == 0](void* m) {
      if (locked) {  // any thread: with the loader's device current, then the thread's own put back
        int before = -1;
        const bool known = p->get_device(&before) == 0;
        const bool switched = !known || before != p->device;
        if (switched) p->set_device(p->device);
        p->page_unlock(m);
        if (switched && known) p->set_device(before);
      }
      std::free(m);
    });
  };
}

// The StreamingLoader behind a mutex, closable from any thread.
class Loader : public groupmates_binding::LoaderHandle<gm::StreamingLoader> {
 public:
  /// host_register / host_unregister / set_device / get_device: addresses of cudaHostRegister /
  /// cudaHostUnregister / cudaSetDevice / cudaGetDevice (all 0: plain buffers); device: the CUDA device
  /// current during their calls.
  Loader(gm::LoaderConfig config, std::optional<std::string> state, uint64_t host_register, uint64_t host_unregister,
         uint64_t set_device, uint64_t get_device, int device) {
    const bool any = host_register || host_unregister || set_device || get_device;
    if (any && !(host_register && host_unregister && set_device && get_device))
      throw gm::Error(gm::ErrorCode::kInvalidConfig, "host_register",
                      "give all of cudaHostRegister, cudaHostUnregister, cudaSetDevice and cudaGetDevice, or none");
    gm::BufferAllocator allocator;
    if (host_register != 0) {
      if (device < 0) throw gm::Error(gm::ErrorCode::kInvalidConfig, "device", "a CUDA device index >= 0 is needed to pin buffers");
      pinning_ = std::make_shared<HostPinning>();
      pinning_->page_lock = reinterpret_cast<HostPinning::Register>(host_register);
      pinning_->page_unlock = reinterpret_cast<HostPinning::Unregister>(host_unregister);
      pinning_->set_device = reinterpret_cast<HostPinning::SetDevice>(set_device);
      pinning_->get_device = reinterpret_cast<HostPinning::GetDevice>(get_device);
      pinning_->device = device;
      allocator = pinned_allocator(pinning_);
    }
    py::gil_scoped_release nogil;
    if (state) {
      core_ = std::make_unique<gm::StreamingLoader>(std::move(config), gm::LoaderState::parse(*state), std::move(allocator));
    } else {
      core_ = std::make_unique<gm::StreamingLoader>(std::move(config), std::move(allocator));
    }
  }
  // Runs from Python's deallocation with the GIL held; released while the threads are joined (a
  // page-locking callback given from Python, as in the tests, needs it on a worker thread).
  ~Loader() override {
    if (!core_) return;
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mu_);
    core_.reset();
  }

  /// {"pinned_buffers", "pin_failures", "pin_last_error"}: buffers page-locked, refused (used unpinned),
  /// the runtime's last error code (all 0 without pinning).
  py::dict pinning() const {
    py::dict d;
    d["pinned_buffers"] = pinning_ ? pinning_->pinned.load() : 0;
    d["pin_failures"] = pinning_ ? pinning_->failed.load() : 0;
    d["pin_last_error"] = pinning_ ? pinning_->last_error.load() : 0;
    return d;
  }

  py::object next(bool candidates) {
    std::optional<gm::HostBatch> b;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      b = live().next();
    }
    if (!b) return py::none();
    const int64_t* data = b->tokens.get();
    auto rows = groupmates_binding::rows_view(std::move(b->tokens), data, b->batch_size, b->sequence_length);
    return groupmates_binding::batch_dict(std::move(rows), b->ids, b->index, candidates);
  }

  // Stops and joins the worker threads; idempotent.
  void close() {
    std::unique_ptr<gm::StreamingLoader> dead;
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mu_);
    dead = std::move(core_);
    dead.reset();
  }

 protected:
  uint64_t position() override { return live().state().batches; }

 private:
  std::shared_ptr<HostPinning> pinning_;
};

/// The targets of `rows` ([B, T + 1] int64, any row stride) as numpy arrays, computed without the GIL.
py::dict training_targets(py::array_t<int64_t> rows, const gm::LoaderConfig& config) {
  const int64_t T = config.sequence_length;
  if (rows.ndim() != 2 || rows.shape(1) != T + 1 || rows.strides(1) != static_cast<py::ssize_t>(sizeof(int64_t)))
    throw gm::Error(gm::ErrorCode::kInvalidConfig, "training_targets.rows",
                    "expected int64 rows [B, sequence_length + 1 = " + std::to_string(T + 1) + "] with contiguous rows");
  const py::ssize_t B = rows.shape(0);
  py::array_t<int64_t> labels({B, static_cast<py::ssize_t>(T)});
  py::array_t<float> loss_mask({B, static_cast<py::ssize_t>(T)});
  gm::TargetBuffers out;
  out.labels = labels.mutable_data();
  out.loss_mask = loss_mask.mutable_data();
  py::dict d;
  d["labels"] = labels;
  d["loss_mask"] = loss_mask;
  if (config.position_ids) {
    py::array_t<int64_t> a({B, static_cast<py::ssize_t>(T)});
    out.position_ids = a.mutable_data();
    d["position_ids"] = a;
  }
  std::vector<int32_t> cu;
  int64_t max_seqlen = 0;
  if (config.document_boundaries) {
    py::array_t<int64_t> a({B, static_cast<py::ssize_t>(T)});
    out.document_ids = a.mutable_data();
    out.cu_seqlens = &cu;
    out.max_seqlen = &max_seqlen;
    d["document_ids"] = a;
  }
  {
    py::gil_scoped_release nogil;
    gm::compute_training_targets(rows.data(), static_cast<uint32_t>(B),
                                 static_cast<uint64_t>(rows.strides(0) / static_cast<py::ssize_t>(sizeof(int64_t))),
                                 config, out);
  }
  if (config.document_boundaries) {
    d["cu_seqlens"] = py::array_t<int32_t>(static_cast<py::ssize_t>(cu.size()), cu.data());
    d["max_seqlen"] = max_seqlen;
  }
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "groupmates C++ core (use the groupmates package, not this module)";
  groupmates_binding::install_errors(m);

  // ---- the loader's configs (include/groupmates/config.h)
  py::enum_<gm::SourceFormat>(m, "SourceFormat")
      .value("token_file", gm::SourceFormat::kTokenFile)
      .value("megatron", gm::SourceFormat::kMegatron)
      .value("jsonl", gm::SourceFormat::kJsonl);
  py::enum_<gm::TokenDtype>(m, "TokenDtype").value("uint16", gm::TokenDtype::kUint16).value("uint32", gm::TokenDtype::kUint32);
  py::enum_<gm::OnExhausted>(m, "OnExhausted").value("end", gm::OnExhausted::kEnd).value("recycle", gm::OnExhausted::kRecycle);
  py::enum_<gm::BadInputPolicy>(m, "BadInputPolicy").value("fail", gm::BadInputPolicy::kFail).value("skip", gm::BadInputPolicy::kSkip);
  py::enum_<gm::PackingMode>(m, "PackingMode")
      .value("packed", gm::PackingMode::kPacked)
      .value("document_aligned", gm::PackingMode::kDocumentAligned);

  Struct<gm::SourceConfig>(m, "SourceConfig", "groupmates::SourceConfig")
      .field("name", &gm::SourceConfig::name)
      .field("format", &gm::SourceConfig::format)
      .field("paths", &gm::SourceConfig::paths)
      .field("dtype", &gm::SourceConfig::dtype)
      .field("weight", &gm::SourceConfig::weight)
      .field("on_exhausted", &gm::SourceConfig::on_exhausted)
      .field("text_field", &gm::SourceConfig::text_field)
      .field("tokenizer_model", &gm::SourceConfig::tokenizer_model)
      .field("append_eos", &gm::SourceConfig::append_eos)
      .field("eos_id", &gm::SourceConfig::eos_id)
      .field("max_line_bytes", &gm::SourceConfig::max_line_bytes)
      .field("zstd_cache_bytes", &gm::SourceConfig::zstd_cache_bytes)
      .field("index_cache", &gm::SourceConfig::index_cache)
      .field("index_cache_dir", &gm::SourceConfig::index_cache_dir);

  Struct<gm::LoaderConfig>(m, "LoaderConfig", "groupmates::LoaderConfig")
      .field("sources", &gm::LoaderConfig::sources)
      .field("sequence_length", &gm::LoaderConfig::sequence_length)
      .field("batch_size", &gm::LoaderConfig::batch_size)
      .field("rank", &gm::LoaderConfig::rank)
      .field("world_size", &gm::LoaderConfig::world_size)
      .field("check_rank_environment", &gm::LoaderConfig::check_rank_environment)
      .field("reader_count", &gm::LoaderConfig::reader_count)
      .field("reader_index", &gm::LoaderConfig::reader_index)
      .field("seed", &gm::LoaderConfig::seed)
      .field("shuffle", &gm::LoaderConfig::shuffle)
      .field("shuffle_block", &gm::LoaderConfig::shuffle_block)
      .field("shuffle_span", &gm::LoaderConfig::shuffle_span)
      .field("epochs", &gm::LoaderConfig::epochs)
      .field("packing", &gm::LoaderConfig::packing)
      .field("eos_id", &gm::LoaderConfig::eos_id)
      .field("pad_id", &gm::LoaderConfig::pad_id)
      .field("vocab_size", &gm::LoaderConfig::vocab_size)
      .field("bad_input", &gm::LoaderConfig::bad_input)
      .field("num_threads", &gm::LoaderConfig::num_threads)
      .field("prefetch_batches", &gm::LoaderConfig::prefetch_batches)
      .field("tokenize_ahead", &gm::LoaderConfig::tokenize_ahead)
      .field("labels", &gm::LoaderConfig::labels)
      .field("mask_across_documents", &gm::LoaderConfig::mask_across_documents)
      .field("position_ids", &gm::LoaderConfig::position_ids)
      .field("document_boundaries", &gm::LoaderConfig::document_boundaries)
      .cls().def("validate", &gm::LoaderConfig::validate);
  // Ranks from torchrun's environment (include/groupmates/rank_environment.h); the Python package
  // puts an initialised torch.distributed group first (groupmates/ranks.py).
  m.attr("FROM_ENVIRONMENT") = gm::kFromEnvironment;
  m.attr("LOADER_EOS_ID") = gm::kLoaderEosId;
  m.attr("SHUFFLE_BLOCK_AUTO") = gm::kShuffleBlockAuto;
  m.attr("REPLAY_SHARE_AUTO") = gm::kReplayShareAuto;
  m.def("resolve_ranks", [](const gm::LoaderConfig& c) {
    const gm::LoaderConfig r = gm::resolve_ranks(c, gm::read_rank_environment());
    return py::make_tuple(r.rank, r.world_size);
  }, "(rank, world_size) of the config, resolved from the process environment (RANK, WORLD_SIZE)");

  // ---- training targets of rows of T + 1 tokens (include/groupmates/training_targets.h)
  m.attr("IGNORE_INDEX") = gm::kIgnoreIndex;
  m.def("_training_targets", &training_targets, py::arg("rows"), py::arg("config"),
        "labels, loss_mask (and position_ids, document_ids, cu_seqlens, max_seqlen as the config asks) "
        "of int64 rows [B, sequence_length + 1]");

  // ---- selection and probes (include/groupmates/selection_config.h; validated by the engine)
  py::enum_<gm::SelectionMode>(m, "SelectionMode")
      .value("none", gm::SelectionMode::kNone)
      .value("random", gm::SelectionMode::kRandom)
      .value("individual", gm::SelectionMode::kIndividual)
      .value("group", gm::SelectionMode::kGroup)
      .value("group_no_clusters", gm::SelectionMode::kGroupNoClusters)
      .value("importance", gm::SelectionMode::kImportance);
  py::enum_<gm::RefreshMode>(m, "RefreshMode")
      .value("when_ready", gm::RefreshMode::kWhenReady)
      .value("at_step", gm::RefreshMode::kAtStep);
  py::enum_<gm::EncoderKind>(m, "EncoderKind")
      .value("hashed_ngram", gm::EncoderKind::kHashedNgram)
      .value("torchscript", gm::EncoderKind::kTorchScript);

  Struct<gm::SelectionConfig>(m, "SelectionConfig", "groupmates::SelectionConfig")
      .field("mode", &gm::SelectionConfig::mode)
      .field("window_size", &gm::SelectionConfig::window_size)
      .field("ratio", &gm::SelectionConfig::ratio)
      .field("clusters", &gm::SelectionConfig::clusters)
      .field("influence_prefilter", &gm::SelectionConfig::influence_prefilter)
      .field("prefilter_ratio", &gm::SelectionConfig::prefilter_ratio)
      .field("merge_cluster_budgets", &gm::SelectionConfig::merge_cluster_budgets)
      .field("nearest_pick_discount", &gm::SelectionConfig::nearest_pick_discount)
      .field("nonpositive_influence", &gm::SelectionConfig::nonpositive_influence)
      .field("temperature", &gm::SelectionConfig::temperature)
      .field("relations", &gm::SelectionConfig::relations)
      .field("replay_share", &gm::SelectionConfig::replay_share)
      .field("replay_rows", &gm::SelectionConfig::replay_rows)
      .field("replay_max_repeats", &gm::SelectionConfig::replay_max_repeats)
      .field("replay_relative_overlap", &gm::SelectionConfig::replay_relative_overlap)
      .field("seen_discount", &gm::SelectionConfig::seen_discount)
      .field("seen_shingle_tokens", &gm::SelectionConfig::seen_shingle_tokens)
      .field("seen_memory_shingles", &gm::SelectionConfig::seen_memory_shingles)
      .field("importance_prior", &gm::SelectionConfig::importance_prior)
      .field("importance_buckets", &gm::SelectionConfig::importance_buckets)
      .field("importance_mix", &gm::SelectionConfig::importance_mix)
      .field("reference_feedback", &gm::SelectionConfig::reference_feedback)
      .field("reference_feedback_share", &gm::SelectionConfig::reference_feedback_share)
      .field("refresh_mode", &gm::SelectionConfig::refresh_mode)
      .field("encoder", &gm::SelectionConfig::encoder)
      .field("encoder_path", &gm::SelectionConfig::encoder_path)
      .field("encoder_buckets", &gm::SelectionConfig::encoder_buckets)
      .field("encoder_dim", &gm::SelectionConfig::encoder_dim)
      .field("encoder_bag_dim", &gm::SelectionConfig::encoder_bag_dim)
      .field("encoder_max_ngram", &gm::SelectionConfig::encoder_max_ngram)
      .field("refresh_train_steps", &gm::SelectionConfig::refresh_train_steps)
      .field("refresh_batch_rollouts", &gm::SelectionConfig::refresh_batch_rollouts)
      .field("refresh_learning_rate", &gm::SelectionConfig::refresh_learning_rate)
      .field("heap_release_interval_seconds", &gm::SelectionConfig::heap_release_interval_seconds)
      .field("refresh_gate", &gm::SelectionConfig::refresh_gate)
      .field("refresh_gate_margin", &gm::SelectionConfig::refresh_gate_margin)
      .field("refresh_gate_top_share", &gm::SelectionConfig::refresh_gate_top_share)
      .field("refresh_head_shrinkage", &gm::SelectionConfig::refresh_head_shrinkage)
      .field("refresh_head_share_start", &gm::SelectionConfig::refresh_head_share_start)
      .field("robust_label_scaling", &gm::SelectionConfig::robust_label_scaling)
      .field("per_position_labels", &gm::SelectionConfig::per_position_labels)
      .field("relation_tau", &gm::SelectionConfig::relation_tau)
      .field("relation_tau_min", &gm::SelectionConfig::relation_tau_min)
      .field("train_ngram_table", &gm::SelectionConfig::train_ngram_table)
      .field("label_buffer_rollouts", &gm::SelectionConfig::label_buffer_rollouts)
      .field("seed", &gm::SelectionConfig::seed)
      .field("log_path", &gm::SelectionConfig::log_path)
      .field("max_window_memory_bytes", &gm::SelectionConfig::max_window_memory_bytes);

  Struct<gm::ProbeConfig>(m, "ProbeConfig", "groupmates::ProbeConfig")
      .field("interval_steps", &gm::ProbeConfig::interval_steps)
      .field("first_step", &gm::ProbeConfig::first_step)
      .field("rollout_length", &gm::ProbeConfig::rollout_length)
      .field("random_rollouts", &gm::ProbeConfig::random_rollouts)
      .field("neighbour_rollouts", &gm::ProbeConfig::neighbour_rollouts)
      .field("bootstrap_pairs", &gm::ProbeConfig::bootstrap_pairs)
      .field("lr_scale", &gm::ProbeConfig::lr_scale)
      .field("first_order_labels", &gm::ProbeConfig::first_order_labels)
      .field("pool_rows", &gm::ProbeConfig::pool_rows)
      .field("effect_delay_steps", &gm::ProbeConfig::effect_delay_steps)
      .field("max_seconds", &gm::ProbeConfig::max_seconds)
      .field("budget", &gm::ProbeConfig::budget)
      .field("min_rollouts", &gm::ProbeConfig::min_rollouts)
      .field("gated_backoff_max", &gm::ProbeConfig::gated_backoff_max)
      .field("timeout_seconds", &gm::ProbeConfig::timeout_seconds)
      .field("nice", &gm::ProbeConfig::nice)
      .field("trainer_thread_rollouts", &gm::ProbeConfig::trainer_thread_rollouts)
      .field("max_consecutive_failures", &gm::ProbeConfig::max_consecutive_failures);

  // ---- stats (include/groupmates/streaming_loader.h, selection_stats.h), read-only
  Struct<gm::LoaderStats>(m, "LoaderStats", "groupmates::LoaderStats", true)
      .field("batches", &gm::LoaderStats::batches)
      .field("buffers_allocated", &gm::LoaderStats::buffers_allocated)
      .field("consumer_wait_seconds", &gm::LoaderStats::consumer_wait_seconds)
      .field("batches_in_flight", &gm::LoaderStats::batches_in_flight)
      .field("line_index_cache_hits", &gm::LoaderStats::line_index_cache_hits)
      .field("line_index_cache_misses", &gm::LoaderStats::line_index_cache_misses)
      .field("zstd_frame_cache_hits", &gm::LoaderStats::zstd_frame_cache_hits)
      .field("zstd_frame_cache_misses", &gm::LoaderStats::zstd_frame_cache_misses)
      .field("zstd_frame_cache_bytes", &gm::LoaderStats::zstd_frame_cache_bytes);

  Struct<gm::ProbeStats>(m, "ProbeStats", "groupmates::ProbeStats", true)
      .field("probes_started", &gm::ProbeStats::probes_started)
      .field("probes_completed", &gm::ProbeStats::probes_completed)
      .field("probes_skipped_busy", &gm::ProbeStats::probes_skipped_busy)
      .field("probes_failed", &gm::ProbeStats::probes_failed)
      .field("probes_timed_out", &gm::ProbeStats::probes_timed_out)
      .field("rollouts_kept", &gm::ProbeStats::rollouts_kept)
      .field("rollouts_discarded", &gm::ProbeStats::rollouts_discarded)
      .field("rollouts_skipped", &gm::ProbeStats::rollouts_skipped)
      .field("snapshot_seconds", &gm::ProbeStats::snapshot_seconds)
      .field("probe_seconds", &gm::ProbeStats::probe_seconds)
      .field("wall_seconds", &gm::ProbeStats::wall_seconds)
      .field("probe_share", &gm::ProbeStats::probe_share)
      .field("snapshot_share", &gm::ProbeStats::snapshot_share)
      .field("seconds_per_rollout", &gm::ProbeStats::seconds_per_rollout)
      .field("last_probe_step", &gm::ProbeStats::last_probe_step)
      .field("last_error", &gm::ProbeStats::last_error);

  Struct<gm::SelectionCost>(m, "SelectionCost", "groupmates::SelectionCost", true)
      .field("flops_per_token", &gm::SelectionCost::flops_per_token)
      .field("train_tokens", &gm::SelectionCost::train_tokens)
      .field("probe_train_tokens", &gm::SelectionCost::probe_train_tokens)
      .field("probe_eval_tokens", &gm::SelectionCost::probe_eval_tokens)
      .field("train_flops", &gm::SelectionCost::train_flops)
      .field("probe_flops", &gm::SelectionCost::probe_flops)
      .field("refresh_flops", &gm::SelectionCost::refresh_flops)
      .field("scoring_flops", &gm::SelectionCost::scoring_flops)
      .field("scoring_seconds", &gm::SelectionCost::scoring_seconds)
      .field("selection_seconds", &gm::SelectionCost::selection_seconds)
      .field("wait_scoring_seconds", &gm::SelectionCost::wait_scoring_seconds)
      .field("wait_refresh_seconds", &gm::SelectionCost::wait_refresh_seconds)
      .field("wait_probe_seconds", &gm::SelectionCost::wait_probe_seconds)
      .field("snapshot_seconds", &gm::SelectionCost::snapshot_seconds)
      .field("probe_slice_seconds", &gm::SelectionCost::probe_slice_seconds);

  Struct<gm::VersionSwitch>(m, "VersionSwitch", "groupmates::VersionSwitch", true)
      .field("window", &gm::VersionSwitch::window)
      .field("probe_step", &gm::VersionSwitch::probe_step)
      .field("version", &gm::VersionSwitch::version);

  Struct<gm::SelectionStats>(m, "SelectionStats", "groupmates::SelectionStats", true)
      .field("windows", &gm::SelectionStats::windows)
      .field("warmup_windows", &gm::SelectionStats::warmup_windows)
      .field("seen", &gm::SelectionStats::seen)
      .field("selected", &gm::SelectionStats::selected)
      .field("seen_per_cluster", &gm::SelectionStats::seen_per_cluster)
      .field("selected_per_cluster", &gm::SelectionStats::selected_per_cluster)
      .field("model_version", &gm::SelectionStats::model_version)
      .field("refreshes", &gm::SelectionStats::refreshes)
      .field("refresh_seconds", &gm::SelectionStats::refresh_seconds)
      .field("refresh_wait_seconds", &gm::SelectionStats::refresh_wait_seconds)
      .field("heap_releases", &gm::SelectionStats::heap_releases)
      .field("heap_release_seconds", &gm::SelectionStats::heap_release_seconds)
      .field("last_heldout_spearman", &gm::SelectionStats::last_heldout_spearman)
      .field("last_heldout_spearman_scaled", &gm::SelectionStats::last_heldout_spearman_scaled)
      .field("last_heldout_spearman_prior", &gm::SelectionStats::last_heldout_spearman_prior)
      .field("last_heldout_spearman_unshrunk", &gm::SelectionStats::last_heldout_spearman_unshrunk)
      .field("head_share", &gm::SelectionStats::head_share)
      .field("head_share_scores", &gm::SelectionStats::head_share_scores)
      .field("refreshes_gated", &gm::SelectionStats::refreshes_gated)
      .field("probes", &gm::SelectionStats::probes)
      .field("cost", &gm::SelectionStats::cost)
      .field("probes_skipped_budget", &gm::SelectionStats::probes_skipped_budget)
      .field("probes_skipped_backoff", &gm::SelectionStats::probes_skipped_backoff)
      .field("refreshes_failed", &gm::SelectionStats::refreshes_failed)
      .field("refreshes_rejected_nonfinite", &gm::SelectionStats::refreshes_rejected_nonfinite)
      .field("last_refresh_error", &gm::SelectionStats::last_refresh_error)
      .field("consecutive_failures", &gm::SelectionStats::consecutive_failures)
      .field("prior_weight", &gm::SelectionStats::prior_weight)
      .field("switches", &gm::SelectionStats::switches)
      .field("replayed", &gm::SelectionStats::replayed)
      .field("label_buffer_rollouts", &gm::SelectionStats::label_buffer_rollouts)
      .field("versions_held", &gm::SelectionStats::versions_held)
      .field("refreshes_pending", &gm::SelectionStats::refreshes_pending)
      .field("replay_rows", &gm::SelectionStats::replay_rows)
      .field("replay_relatives", &gm::SelectionStats::replay_relatives)
      .field("seen_discounted", &gm::SelectionStats::seen_discounted)
      .field("resume_dropped_rows", &gm::SelectionStats::resume_dropped_rows)
      .field("resume_dropped_probes", &gm::SelectionStats::resume_dropped_probes)
      .field("model_hash", &gm::SelectionStats::model_hash)
      .field("centroids_hash", &gm::SelectionStats::centroids_hash)
      .field("labels_hash", &gm::SelectionStats::labels_hash)
      .field("shared_rollouts", &gm::SelectionStats::shared_rollouts)
      .field("shared_bytes", &gm::SelectionStats::shared_bytes);

  // ---- the plain loader and the tokenizer
  py::class_<Loader> loader(m, "Loader");
  loader.def(py::init<gm::LoaderConfig, std::optional<std::string>, uint64_t, uint64_t, uint64_t, uint64_t, int>(),
             py::arg("config"), py::arg("state") = py::none(), py::arg("host_register") = 0, py::arg("host_unregister") = 0,
             py::arg("set_device") = 0, py::arg("get_device") = 0, py::arg("device") = -1);
  loader.def("pinning", &Loader::pinning);
  groupmates_binding::def_loader(loader);

  py::class_<gm::Tokenizer, std::shared_ptr<gm::Tokenizer>>(m, "Tokenizer")
      .def_static("load", [](const std::string& path) {
        py::gil_scoped_release nogil;
        return gm::Tokenizer::load(path);
      }, py::arg("model_path"))
      .def("encode", [](const gm::Tokenizer& t, const std::string& text) {
        std::vector<uint32_t> out;
        t.encode(text, out);
        return out;
      })
      .def("decode", &gm::Tokenizer::decode)
      .def_property_readonly("vocab_size", &gm::Tokenizer::vocab_size)
      .def_property_readonly("eos_id", &gm::Tokenizer::eos_id)
      .def_static("shim_path", &gm::Tokenizer::shim_path);
}
