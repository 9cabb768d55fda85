// The Python handle of a groupmates::ProbeTarget (class groupmates._engine.ProbeTarget), shared by
// engine.cpp and the test-only testhooks.cpp. A named type on purpose: pybind11 finds the class
// _engine registered when the other module takes or returns one.
#pragma once

#include <memory>

#include "groupmates/probe_target.h"

namespace groupmates_binding {

struct TargetHandle {
  std::shared_ptr<groupmates::ProbeTarget> target;
};

}  // namespace groupmates_binding
