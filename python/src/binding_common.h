// Code shared by the two pybind11 extensions, groupmates._core (core.cpp) and groupmates._engine
// (engine.cpp): translation of groupmates::Error into the package's exception classes, and the
// mutex-guarded, closable handle over a C++ loader.
//
// Free of LibTorch on purpose (_core links no LibTorch). Everything here has internal linkage
// (unnamed namespace): each extension is one translation unit and keeps its own copy, including
// its own table of exception classes, as when the code stood in each file.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "groupmates/error.h"

namespace groupmates_binding {
namespace {

namespace py = pybind11;
namespace gm = groupmates;

// Python exception classes by error code name, registered by groupmates/errors.py at import.
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

/// Defines `_register_errors(classes: dict)` on `m`: the table `translate` looks classes up in.
void def_register_errors(py::module_& m) {
  m.def("_register_errors", [](py::dict classes) {
    if (error_classes == nullptr) error_classes = new py::dict();
    error_classes->clear();
    for (auto kv : classes) (*error_classes)[kv.first] = kv.second;
  });
}

class ClosedError : public std::runtime_error {
 public:
  ClosedError() : std::runtime_error("groupmates: the loader is closed") {}
};

/// A C++ loader (`Core`: next() returning an optional batch, state().serialize()) behind a mutex,
/// closable from any thread. Every method that may wait releases the GIL first and only then
/// takes the mutex. The derived binding adds next(), stats() and close().
template <typename Core>
class LoaderHandle {
 public:
  // Consumes up to n batches without handing them to Python; returns how many there were.
  uint64_t skip(uint64_t n) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t done = 0;
    while (done < n && live().next()) ++done;
    return done;
  }

  std::string state() {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mu_);
    return live().state().serialize();
  }

  bool closed() const { return core_ == nullptr; }

  // In a fork()ed child: the parent's worker threads do not exist here, so the inherited loader
  // can be neither used nor destroyed (joining would hang). Drop it without running anything.
  void abandon() { (void)core_.release(); }

 protected:
  Core& live() {
    if (!core_) throw ClosedError();
    return *core_;
  }
  std::mutex mu_;
  std::unique_ptr<Core> core_;
};

}  // namespace
}  // namespace groupmates_binding
