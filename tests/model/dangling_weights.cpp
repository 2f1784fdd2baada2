// SPDX-License-Identifier: MIT
// Compile check: a session or a reader keeps a reference to its weights, so building one from a
// temporary model_weights must not compile (tests/model/CMakeLists.txt expects the deleted-function
// error); the control, from a named model_weights, must.
#include <pith/runtime/reader.hpp>

pith::model_weights make_weights();

#if defined(PITH_DANGLING_SESSION)
void build_from_a_temporary() {
  pith::session s(make_weights());
  (void)s;
}
#elif defined(PITH_DANGLING_READER)
void build_from_a_temporary() {
  pith::reader r(make_weights(), pith::reader_options{}, {1, 2});
  (void)r;
}
#else
void build_from_a_named_model() {
  const pith::model_weights weights = make_weights();
  pith::session s(weights);
  pith::reader r(weights, pith::reader_options{}, {1, 2});
}
#endif
