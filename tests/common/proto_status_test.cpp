// Status <-> tandem.change.Error: every code survives the trip, code by code.
#include <catch2/catch.hpp>

#include "runtime/sqlite/proto_value.hpp"

using namespace tandem;

TEST_CASE("every status code survives a round trip through change.Error", "[proto][status]") {
  const StatusCode codes[] = {StatusCode::invalid_argument, StatusCode::constraint,       StatusCode::unsupported,
                              StatusCode::not_found,        StatusCode::unauthenticated,  StatusCode::permission_denied,
                              StatusCode::unavailable,      StatusCode::internal,         StatusCode::resource_exhausted};
  for (StatusCode code : codes) {
    change::Error e;
    to_proto(Status(code, "why"), &e);
    CHECK(change::Error::Code_Name(e.code()) != "OK");
    Status back = from_proto(e);
    CHECK(back.code() == code);
    CHECK(back.message() == "why");
  }
  change::Error ok;
  to_proto(Status::Ok(), &ok);
  CHECK(ok.code() == change::Error::OK);
  CHECK(from_proto(ok).ok());
  // The names line up too: the wire says what the status says.
  change::Error c;
  to_proto(Status::Constraint("x"), &c);
  CHECK(c.code() == change::Error::CONSTRAINT);
  to_proto(Status::ResourceExhausted("x"), &c);
  CHECK(c.code() == change::Error::RESOURCE_EXHAUSTED);
  // A code from a newer peer is an internal error that keeps its message.
  change::Error unknown;
  unknown.set_code(static_cast<change::Error::Code>(42));
  unknown.set_message("from the future");
  Status s = from_proto(unknown);
  CHECK(s.code() == StatusCode::internal);
  CHECK(s.message() == "from the future");
}
