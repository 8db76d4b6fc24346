#include "reorder.h"

namespace gradfleet {

namespace {
dnnl::memory scratchMemory(const dnnl::memory::desc& want, std::unique_ptr<ScratchBuffer>& holder) {
  holder = std::make_unique<ScratchBuffer>(want.get_size());
  return dnnl::memory(want, cpuEngine(), holder->data());
}
}  // namespace

dnnl::memory asLayout(const dnnl::memory::desc& want, const dnnl::memory& user, std::unique_ptr<ScratchBuffer>& holder) {
  if (want == user.get_desc()) return user;
  dnnl::memory copy = scratchMemory(want, holder);
  dnnl::reorder(user, copy).execute(cpuStream(), const_cast<dnnl::memory&>(user), copy);
  return copy;
}

dnnl::memory outputIn(const dnnl::memory::desc& want, const dnnl::memory& user, std::unique_ptr<ScratchBuffer>& holder) {
  if (want == user.get_desc()) return user;
  return scratchMemory(want, holder);
}

void copyBack(const dnnl::memory& produced, const dnnl::memory& user) {
  if (produced.get_data_handle() == user.get_data_handle()) return;
  dnnl::reorder(produced, user).execute(cpuStream(), const_cast<dnnl::memory&>(produced), const_cast<dnnl::memory&>(user));
}

}  // namespace gradfleet
