#include "sources/sigbus_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

namespace groupmates {
namespace {

constexpr int kSlots = 1024;
constexpr uint64_t kNoFault = UINT64_MAX;

struct Slot {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<uint64_t> fault_offset{kNoFault};
};

Slot g_slots[kSlots];
std::string g_paths[kSlots];  // guarded by g_mu; never read by the handler
std::mutex g_mu;
std::atomic<uint64_t> g_faults{0};
struct sigaction g_previous;
std::once_flag g_installed;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& s : g_slots) {
    const uintptr_t b = s.begin.load(std::memory_order_acquire);
    if (b == 0 || addr < b || addr >= s.end.load(std::memory_order_acquire)) continue;
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t at = addr / page * page;
    void* p = ::mmap(reinterpret_cast<void*>(at), page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED) break;  // cannot patch: fall through to the default action
    uint64_t none = kNoFault;
    s.fault_offset.compare_exchange_strong(none, at - b);
    g_faults.fetch_add(1, std::memory_order_release);
    return;
  }
  // Not ours: the previous handler, or the default action (re-raised on return).
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction != nullptr) return g_previous.sa_sigaction(sig, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    return g_previous.sa_handler(sig);
  }
  ::signal(SIGBUS, SIG_DFL);  // the faulting instruction runs again and ends the process
}

void install() {
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, &g_previous);
}

}  // namespace

int sigbus_guard_register(const void* begin, uint64_t size, const std::string& path) {
  if (begin == nullptr || size == 0) return -1;
  std::call_once(g_installed, install);
  std::lock_guard<std::mutex> lock(g_mu);
  for (int i = 0; i < kSlots; ++i) {
    Slot& s = g_slots[i];
    if (s.begin.load(std::memory_order_relaxed) != 0) continue;
    g_paths[i] = path;
    s.fault_offset.store(kNoFault, std::memory_order_relaxed);
    s.end.store(reinterpret_cast<uintptr_t>(begin) + size, std::memory_order_release);
    s.begin.store(reinterpret_cast<uintptr_t>(begin), std::memory_order_release);
    return i;
  }
  return -1;
}

void sigbus_guard_unregister(int slot) {
  if (slot < 0 || slot >= kSlots) return;
  std::lock_guard<std::mutex> lock(g_mu);
  g_slots[slot].begin.store(0, std::memory_order_release);
  g_slots[slot].end.store(0, std::memory_order_release);
  g_paths[slot].clear();
}

uint64_t sigbus_guard_faults() { return g_faults.load(std::memory_order_acquire); }

bool sigbus_guard_first_fault(std::string* path, uint64_t* offset) {
  std::lock_guard<std::mutex> lock(g_mu);
  for (int i = 0; i < kSlots; ++i) {
    const Slot& s = g_slots[i];
    const uint64_t off = s.fault_offset.load(std::memory_order_acquire);
    if (s.begin.load(std::memory_order_acquire) == 0 || off == kNoFault) continue;
    *path = g_paths[i];
    *offset = off;
    return true;
  }
  return false;
}

}  // namespace groupmates
