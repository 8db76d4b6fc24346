// Moves data between the caller's plain layout and the layout a primitive asked for.
#pragma once
#include <memory>
#include "dnnl-context.h"

namespace gradfleet {

// A memory in the layout `want`: `user` itself when it already is, else a reordered copy of it.
// `holder` keeps the copy's buffer alive for the caller.
dnnl::memory asLayout(const dnnl::memory::desc& want, const dnnl::memory& user, std::unique_ptr<ScratchBuffer>& holder);

// A memory in the layout `want` to be written by a primitive and later copied into `user`
// (by copyBack) when the layouts differ.
dnnl::memory outputIn(const dnnl::memory::desc& want, const dnnl::memory& user, std::unique_ptr<ScratchBuffer>& holder);
void copyBack(const dnnl::memory& produced, const dnnl::memory& user);

}  // namespace gradfleet
