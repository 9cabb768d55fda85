// groupmates._core: pybind11 bindings of the LibTorch-free streaming core.
//
// Threads and the GIL: the loader's planner and pool threads are pure C++ and never touch Python.
// Every call that may wait (opening sources, next(), skip(), close()) releases the GIL first and
// only then takes the binding's mutex, so a Python thread blocked here never holds the GIL.
//
// Zero-copy: next() hands the pooled [B, T] int64 buffer to Python as a numpy array whose base is a
// capsule owning the buffer's shared_ptr; groupmates.GroupMatesLoader wraps it with
// torch.from_numpy. The buffer returns to the pool when the last array/tensor over it dies
// (also after the loader is gone: the pool is reference-counted, the buffer is then freed).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "groupmates/config.h"
#include "groupmates/error.h"
#include "groupmates/loader_state.h"
#include "groupmates/streaming_loader.h"
#include "groupmates/tokenizer.h"

#include "binding_common.h"

namespace py = pybind11;
namespace gm = groupmates;

using groupmates_binding::ClosedError;
using groupmates_binding::translate;

namespace {

// One batch as numpy arrays: tokens [B, T] int64 (zero-copy) and per-row candidate ids; source,
// document and offset only when asked for (None otherwise: three arrays less per batch).
py::tuple to_python(gm::HostBatch&& b, bool candidates) {
  const py::ssize_t B = b.batch_size, T = b.sequence_length;
  auto* keep = new std::shared_ptr<int64_t>(std::move(b.tokens));
  py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<int64_t>*>(p); });
  py::array_t<int64_t> tokens({B, T}, {T * static_cast<py::ssize_t>(sizeof(int64_t)), static_cast<py::ssize_t>(sizeof(int64_t))},
                              keep->get(), owner);
  py::array_t<uint64_t> hash(B);
  auto h = hash.mutable_unchecked<1>();
  const py::ssize_t rows = std::min<py::ssize_t>(B, static_cast<py::ssize_t>(b.ids.size()));
  for (py::ssize_t i = 0; i < rows; ++i) h(i) = b.ids[i].hash;
  if (!candidates) return py::make_tuple(tokens, hash, py::none(), py::none(), py::none(), b.index);
  py::array_t<int64_t> source(B), document(B), offset(B);
  auto s = source.mutable_unchecked<1>();
  auto d = document.mutable_unchecked<1>();
  auto o = offset.mutable_unchecked<1>();
  for (py::ssize_t i = 0; i < rows; ++i) {
    s(i) = b.ids[i].source;
    d(i) = static_cast<int64_t>(b.ids[i].document);
    o(i) = static_cast<int64_t>(b.ids[i].offset);
  }
  return py::make_tuple(tokens, hash, source, document, offset, b.index);
}

// The StreamingLoader behind a mutex, closable from any thread.
class Loader : public groupmates_binding::LoaderHandle<gm::StreamingLoader> {
 public:
  Loader(gm::LoaderConfig config, std::optional<std::string> state) {
    py::gil_scoped_release nogil;
    if (state) {
      const auto parsed = gm::LoaderState::parse(*state);
      core_ = std::make_unique<gm::StreamingLoader>(std::move(config), parsed);
    } else {
      core_ = std::make_unique<gm::StreamingLoader>(std::move(config));
    }
  }
  // Runs from Python's deallocation with the GIL held; the joined threads never need it.
  ~Loader() {
    std::lock_guard<std::mutex> lock(mu_);
    core_.reset();
  }

  py::object next(bool candidates) {
    std::optional<gm::HostBatch> b;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      b = live().next();
    }
    if (!b) return py::none();
    return to_python(std::move(*b), candidates);
  }

  py::dict stats() {
    gm::LoaderStats s;
    std::map<std::string, uint64_t> skipped;
    std::string report;
    uint64_t fingerprint = 0;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      s = live().stats();
      skipped = live().skipped();
      report = live().skip_report();
      fingerprint = live().config_fingerprint();
    }
    py::dict d;
    d["batches"] = s.batches;
    d["buffers_allocated"] = s.buffers_allocated;
    d["consumer_wait_seconds"] = s.consumer_wait_seconds;
    d["skipped"] = skipped;
    d["skip_report"] = report;
    d["config_fingerprint"] = fingerprint;
    return d;
  }

  // Stops and joins the worker threads; idempotent.
  void close() {
    std::unique_ptr<gm::StreamingLoader> dead;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      dead = std::move(core_);
      dead.reset();
    }
  }
};

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "groupmates C++ core (use the groupmates package, not this module)";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const gm::Error& e) {
      translate(e);
    } catch (const ClosedError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  groupmates_binding::def_register_errors(m);
  m.def("_raise_error", [](const std::string& code, const std::string& where, const std::string& message) {
    for (int c = 0; c <= static_cast<int>(gm::ErrorCode::kInternal); ++c) {
      if (code == gm::error_code_name(static_cast<gm::ErrorCode>(c))) throw gm::Error(static_cast<gm::ErrorCode>(c), where, message);
    }
    throw gm::Error(gm::ErrorCode::kInternal, where, message);
  }, "Raises a groupmates::Error (for tests of the translation).");

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

  py::class_<gm::SourceConfig>(m, "SourceConfig")
      .def(py::init<>())
      .def_readwrite("name", &gm::SourceConfig::name)
      .def_readwrite("format", &gm::SourceConfig::format)
      .def_readwrite("paths", &gm::SourceConfig::paths)
      .def_readwrite("dtype", &gm::SourceConfig::dtype)
      .def_readwrite("weight", &gm::SourceConfig::weight)
      .def_readwrite("on_exhausted", &gm::SourceConfig::on_exhausted)
      .def_readwrite("text_field", &gm::SourceConfig::text_field)
      .def_readwrite("tokenizer_model", &gm::SourceConfig::tokenizer_model);

  py::class_<gm::LoaderConfig>(m, "LoaderConfig")
      .def(py::init<>())
      .def_readwrite("sources", &gm::LoaderConfig::sources)
      .def_readwrite("sequence_length", &gm::LoaderConfig::sequence_length)
      .def_readwrite("batch_size", &gm::LoaderConfig::batch_size)
      .def_readwrite("rank", &gm::LoaderConfig::rank)
      .def_readwrite("world_size", &gm::LoaderConfig::world_size)
      .def_readwrite("seed", &gm::LoaderConfig::seed)
      .def_readwrite("shuffle", &gm::LoaderConfig::shuffle)
      .def_readwrite("epochs", &gm::LoaderConfig::epochs)
      .def_readwrite("packing", &gm::LoaderConfig::packing)
      .def_readwrite("eos_id", &gm::LoaderConfig::eos_id)
      .def_readwrite("pad_id", &gm::LoaderConfig::pad_id)
      .def_readwrite("vocab_size", &gm::LoaderConfig::vocab_size)
      .def_readwrite("bad_input", &gm::LoaderConfig::bad_input)
      .def_readwrite("num_threads", &gm::LoaderConfig::num_threads)
      .def_readwrite("prefetch_batches", &gm::LoaderConfig::prefetch_batches)
      .def_readwrite("tokenize_ahead", &gm::LoaderConfig::tokenize_ahead)
      .def("validate", &gm::LoaderConfig::validate);

  py::class_<Loader>(m, "Loader")
      .def(py::init<gm::LoaderConfig, std::optional<std::string>>(), py::arg("config"), py::arg("state") = py::none())
      .def("next", &Loader::next, py::arg("candidates") = true,
           "(tokens[B,T] int64, hash[B] uint64, source[B], document[B], offset[B], index) or None at the end; "
           "source, document and offset are None unless candidates")
      .def("skip", &Loader::skip, py::arg("n"))
      .def("state", &Loader::state)
      .def("stats", &Loader::stats)
      .def("close", &Loader::close)
      .def_property_readonly("closed", &Loader::closed)
      .def("abandon", &Loader::abandon);

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
