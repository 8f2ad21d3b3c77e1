// Makes protobuf messages CAF 0.17 message types: an `inspect` overload found by
// argument-dependent lookup (in each generated package namespace) that serializes the
// message to bytes around a string field, and a `to_string` that prints it.
// Only actors/, apps/ and tests include this (runtime/ never depends on CAF).
#pragma once

#include <string>
#include <type_traits>

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/save_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>
#include <google/protobuf/message.h>

namespace tandem::proto_caf {

template <class M>
constexpr bool is_proto_v = std::is_base_of_v<google::protobuf::Message, M>;

template <class Inspector, class M>
typename Inspector::result_type inspect_message(Inspector& f, M& x) {
  std::string bytes;
  auto save = caf::meta::save_callback([&]() -> caf::error {
    if (!x.SerializeToString(&bytes)) return caf::make_error(caf::sec::invalid_argument);
    return caf::none;
  });
  auto load = caf::meta::load_callback([&]() -> caf::error {
    if (!x.ParseFromString(bytes)) return caf::make_error(caf::sec::invalid_argument);
    return caf::none;
  });
  return f(caf::meta::type_name(M::descriptor()->full_name().c_str()), save, bytes, load);
}

}  // namespace tandem::proto_caf

// The overloads must live in each package's namespace (argument-dependent lookup), and be
// defined once per translation unit: they are all defined here, under this header's include
// guard, for every package of proto/. A new package is added to this list.
#define TANDEM_PROTO_CAF_DEFINE_GLUE(NS)                                                       \
  namespace NS {                                                                               \
  template <class Inspector, class M, std::enable_if_t<::tandem::proto_caf::is_proto_v<M>, int> = 0> \
  typename Inspector::result_type inspect(Inspector& f, M& x) {                                \
    return ::tandem::proto_caf::inspect_message(f, x);                                         \
  }                                                                                            \
  template <class M, std::enable_if_t<::tandem::proto_caf::is_proto_v<M>, int> = 0>            \
  std::string to_string(const M& x) {                                                          \
    return M::descriptor()->full_name() + "{" + x.ShortDebugString() + "}";                    \
  }                                                                                            \
  }

TANDEM_PROTO_CAF_DEFINE_GLUE(tandem::change)
TANDEM_PROTO_CAF_DEFINE_GLUE(tandem::worker)
TANDEM_PROTO_CAF_DEFINE_GLUE(tandem::sync)
TANDEM_PROTO_CAF_DEFINE_GLUE(tandem::cluster)
TANDEM_PROTO_CAF_DEFINE_GLUE(tandem::query)
TANDEM_PROTO_CAF_DEFINE_GLUE(tandem::view)
TANDEM_PROTO_CAF_DEFINE_GLUE(tandem::tab)
TANDEM_PROTO_CAF_DEFINE_GLUE(tandem::node)

// Kept so that files naming the packages they use still compile; the glue is above.
#define TANDEM_PROTO_CAF_GLUE(NS)
