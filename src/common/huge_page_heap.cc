// The heap of a binary linked with tcmalloc (`tranche`: the controller, the
// agent and the CLI; the agent simulator) in transparent huge pages of
// 2 MiB, where the kernel grants them only on request (transparent_hugepage
// "madvise", Debian's default).
//
// Why: tcmalloc grows its heap about 1 MiB at a time, and each fresh 4 KiB
// page costs a page fault at its first touch. A controller restarted at
// 100,000 members touches some hundreds of MiB of fresh heap in its first
// seconds (its members, the hellos of 10,000 agents); on a virtual machine a
// fault is dear, and faults were 12 % of those seconds' CPU
// (docs/benchmarks.md, "The heap in huge pages"). Growing the heap in
// aligned 2 MiB steps marked MADV_HUGEPAGE makes that one fault per 2 MiB,
// and fewer TLB misses afterwards.
//
// Not a header: the object file registers itself while the binary starts
// (CMake links it as an object library, `tranche_malloc`), before main.

#include <gperftools/malloc_extension.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>

namespace {

class HugePageSysAllocator final : public SysAllocator {
 public:
  explicit HugePageSysAllocator(SysAllocator* system) : system_(system) {}

  void* Alloc(size_t size, size_t* actual_size, size_t alignment) override {
    constexpr size_t kHugePage = size_t{2} << 20;
    const size_t rounded = (size + kHugePage - 1) & ~(kHugePage - 1);
    void* memory = system_->Alloc(rounded, actual_size, std::max(alignment, kHugePage));
    if (memory != nullptr) {
      // Advice: where the kernel has no huge page to give (THP "never", or
      // memory too fragmented), the heap is what it was without it.
      (void)madvise(memory, *actual_size, MADV_HUGEPAGE);
    }
    return memory;
  }

 private:
  SysAllocator* system_;  // tcmalloc's own (sbrk, then mmap): it does the work
};

// tcmalloc has made its first allocations by now (the runtime's own, before
// any static object of ours), so its system allocator exists to wrap.
const bool kRegistered = [] {
  SysAllocator* system = MallocExtension::instance()->GetSystemAllocator();
  if (system == nullptr) {
    return false;
  }
  static HugePageSysAllocator huge_pages(system);
  MallocExtension::instance()->SetSystemAllocator(&huge_pages);
  return true;
}();

}  // namespace
