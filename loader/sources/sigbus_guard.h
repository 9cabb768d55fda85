// sigbus_guard.h: turns SIGBUS on a registered memory map (its file was truncated while mapped)
// into a mark that ordinary code can check, instead of killing the process.
//
// The handler (installed once, at the first registration) looks the faulting address up in a
// fixed table of registered ranges (lock-free reads); on a hit it maps a page of zeros over the
// faulting page (mmap MAP_FIXED, a raw system call), records the offset and returns, so the read
// completes with zeros; on a miss it hands the signal to the previous handler (or the default
// action, which ends the process as before). The owner of a range must check faulted() after
// reading and before using what it read.
#pragma once

#include <cstdint>
#include <string>

namespace groupmates {

/// Registers [begin, begin + size) as the map of `path`; returns a slot, or -1 when the table
/// (1024 maps) is full (that map is then unguarded, as before).
int sigbus_guard_register(const void* begin, uint64_t size, const std::string& path);
/// Forgets a slot (before the range is unmapped). -1 is ignored.
void sigbus_guard_unregister(int slot);
/// Total faults caught so far in this process (0 in normal operation: a fast check).
uint64_t sigbus_guard_faults();
/// If a fault was caught in a live registered map: true, with its path and the byte offset of the
/// faulting page in the file.
bool sigbus_guard_first_fault(std::string* path, uint64_t* offset);

}  // namespace groupmates
