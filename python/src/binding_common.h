// Code shared by the pybind11 extensions groupmates._core (core.cpp), groupmates._engine
// (engine.cpp) and the test-only module groupmates_testhooks (testhooks.cpp): translation of
// groupmates::Error into the package's exception classes, the conversion of a bound struct to a
// dict, the batch handed to Python, and the mutex-guarded, closable handle over a C++ loader.
//
// Free of LibTorch on purpose (_core links no LibTorch). Everything here has internal linkage
// (unnamed namespace): each extension is one translation unit and keeps its own copy, including
// its own table of exception classes.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "groupmates/candidate_id.h"
#include "groupmates/error.h"
#include "groupmates/loader_state.h"
#include "groupmates/streaming_loader.h"

namespace groupmates_binding {
namespace {

namespace py = pybind11;
namespace gm = groupmates;

// Python exception classes by error code name, registered by groupmates/__init__.py at import.
// Intentionally leaked: it must outlive every translation, including during interpreter shutdown.
py::dict* error_classes = nullptr;

/// Sets the Python error for `e`: an instance of the registered class for its code (with `code`
/// and `where` attributes), else a RuntimeError with the same message.
void translate(const gm::Error& e) {
  const char* code = gm::error_code_name(e.code());
  if (error_classes != nullptr && error_classes->contains(code)) {
    try {
      py::object cls = (*error_classes)[code];
      py::object inst = cls(e.what());
      inst.attr("code") = code;
      inst.attr("where") = e.where();
      PyErr_SetObject(cls.ptr(), inst.ptr());
      return;
    } catch (py::error_already_set&) {
      PyErr_Clear();  // fall through to a plain RuntimeError with the same message
    }
  }
  PyErr_SetString(PyExc_RuntimeError, e.what());
}

class ClosedError : public std::runtime_error {
 public:
  ClosedError() : std::runtime_error("groupmates: the loader is closed") {}
};

/// Translates groupmates::Error (see translate) and ClosedError (a RuntimeError), and defines
/// `_register_errors(classes: dict)` on `m`: the table `translate` looks classes up in.
void install_errors(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const gm::Error& e) {
      translate(e);
    } catch (const ClosedError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  m.def("_register_errors", [](py::dict classes) {
    if (error_classes == nullptr) error_classes = new py::dict();
    error_classes->clear();
    for (auto kv : classes) (*error_classes)[kv.first] = kv.second;
  });
}

/// `v` with every bound struct (a class with `_fields`, see core.cpp) turned into a dict of its
/// fields, recursively, also inside lists: the one conversion of C++ stats to Python.
py::object plain(py::handle v) {
  py::handle type = py::type::handle_of(v);
  if (py::hasattr(type, "_fields")) {
    py::dict d;
    for (py::handle f : type.attr("_fields")) {
      py::object name = py::reinterpret_borrow<py::tuple>(f)[0];
      d[name] = plain(v.attr(name));
    }
    return std::move(d);
  }
  if (py::isinstance<py::list>(v)) {
    py::list out;
    for (py::handle x : v) out.append(plain(x));
    return std::move(out);
  }
  return py::reinterpret_borrow<py::object>(v);
}

template <typename T>
py::dict struct_dict(const T& value) {
  return plain(py::cast(value));
}

/// A [B, T] int64 numpy array over `data` (zero-copy), kept alive by a copy of `owner` (a
/// shared_ptr or a tensor) that the array's base capsule deletes when the last view dies.
template <typename Owner>
py::array_t<int64_t> rows_view(Owner owner, const int64_t* data, py::ssize_t B, py::ssize_t T) {
  auto* keep = new Owner(std::move(owner));
  py::capsule base(keep, [](void* p) { delete static_cast<Owner*>(p); });
  const auto item = static_cast<py::ssize_t>(sizeof(int64_t));
  return py::array_t<int64_t>({B, T}, {T * item, item}, data, base);
}

/// The batch both loaders hand to Python (groupmates.GroupMatesLoader wraps its arrays with
/// torch.from_numpy): input_ids [B, T] int64, ids [B] int64 (the candidates' 64-bit hashes,
/// reinterpreted as signed), index; with `candidates` also source, document and offset [B] int64.
py::dict batch_dict(py::array_t<int64_t> input_ids, const std::vector<gm::CandidateId>& ids, uint64_t index,
                    bool candidates) {
  const py::ssize_t B = input_ids.shape(0);
  const py::ssize_t rows = std::min<py::ssize_t>(B, static_cast<py::ssize_t>(ids.size()));
  auto column = [&](auto field) {
    py::array_t<int64_t> a(B);
    auto v = a.mutable_unchecked<1>();
    for (py::ssize_t i = 0; i < B; ++i) v(i) = i < rows ? static_cast<int64_t>(field(ids[i])) : 0;
    return a;
  };
  py::dict d;
  d["input_ids"] = std::move(input_ids);
  d["ids"] = column([](const gm::CandidateId& c) { return c.hash; });
  d["index"] = index;
  if (candidates) {
    d["source"] = column([](const gm::CandidateId& c) { return c.source; });
    d["document"] = column([](const gm::CandidateId& c) { return c.document; });
    d["offset"] = column([](const gm::CandidateId& c) { return c.offset; });
  }
  return d;
}

/// A C++ loader (`Core`: StreamingLoader or GroupMatesLoader) behind a mutex, closable from any
/// thread. Every method that may wait releases the GIL first and only then takes the mutex. The
/// derived binding adds next() and position(); def_loader() binds the methods.
template <typename Core>
class LoaderHandle {
 public:
  virtual ~LoaderHandle() = default;

  // Consumes up to n batches without handing them to Python; returns how many there were.
  uint64_t skip(uint64_t n) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t done = 0;
    while (done < n && live().next()) ++done;
    return done;
  }

  /// (the LoaderState text, batches the trainer consumed so far).
  std::pair<std::string, uint64_t> state() {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mu_);
    std::string text = live().state().serialize();
    return {std::move(text), position()};
  }

  /// Batches the trainer consumed so far (what state() pairs with the text).
  uint64_t batches() {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mu_);
    return position();
  }

  /// LoaderStats (batches the core returned, buffers_allocated, consumer_wait_seconds) and
  /// skip_report; the plain loader also skipped (by source and reason) and config_fingerprint.
  py::dict stats() {
    gm::LoaderStats s;
    std::string report;
    std::map<std::string, uint64_t> skipped;
    uint64_t fingerprint = 0;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      s = live().stats();
      report = live().skip_report();
      if constexpr (std::is_same_v<Core, gm::StreamingLoader>) {
        skipped = live().skipped();
        fingerprint = live().config_fingerprint();
      }
    }
    py::dict d = struct_dict(s);
    d["skip_report"] = report;
    if constexpr (std::is_same_v<Core, gm::StreamingLoader>) {
      d["skipped"] = skipped;
      d["config_fingerprint"] = fingerprint;
    }
    return d;
  }

  bool closed() const { return core_ == nullptr; }

  // In a fork()ed child: the parent's worker threads do not exist here, so the inherited loader
  // can be neither used nor destroyed (joining would hang). Drop it without running anything.
  void abandon() { (void)core_.release(); }

 protected:
  /// Opens the core: Core(args..., parsed state) or Core(args...), without the GIL.
  template <typename... Args>
  void open(const std::optional<std::string>& state, Args&&... args) {
    py::gil_scoped_release nogil;
    if (state) {
      const auto parsed = gm::LoaderState::parse(*state);
      core_ = std::make_unique<Core>(std::forward<Args>(args)..., parsed);
    } else {
      core_ = std::make_unique<Core>(std::forward<Args>(args)...);
    }
  }

  /// Batches the trainer consumed so far; called with mu_ held.
  virtual uint64_t position() = 0;

  Core& live() {
    if (!core_) throw ClosedError();
    return *core_;
  }
  std::mutex mu_;
  std::unique_ptr<Core> core_;
};

/// Binds the methods every loader handle has (`Handle` derives from LoaderHandle and defines
/// next(candidates) and close()).
template <typename Handle, typename... Options>
void def_loader(py::class_<Handle, Options...>& c) {
  c.def("next", &Handle::next, py::arg("candidates") = false,
        "the next batch (see batch_dict in binding_common.h) or None at the end")
      .def("skip", &Handle::skip, py::arg("n"))
      .def("state", &Handle::state, "(LoaderState text, batches consumed)")
      .def("batches", &Handle::batches)
      .def("stats", &Handle::stats)
      .def("close", &Handle::close)
      .def_property_readonly("closed", &Handle::closed)
      .def("abandon", &Handle::abandon);
}

}  // namespace
}  // namespace groupmates_binding
