// Frames of the edge protocol (proto/sync.proto, docs/protocol.md): decoding with the
// checks every receiver needs, and building the common replies. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "proto/sync.pb.h"
#include "runtime/common/status.hpp"

namespace tandem::sync_frames {

inline constexpr uint32_t kProtocolVersion = 1;
// Bounds on a hello's schema, checked before anything of it runs or is kept.
inline constexpr size_t kMaxSchemaStatementBytes = 64 * 1024;
inline constexpr size_t kMaxSchemaBytes = 1024 * 1024;

// Parses one binary frame. MALFORMED for bytes that are not an Envelope; UNKNOWN_MESSAGE
// for an Envelope with no kind this version knows. The error is ready to send.
struct Decoded {
  bool ok = false;
  sync::Envelope envelope;  // valid when ok
  sync::Error error;        // set when !ok
};
Decoded decode(const std::string& frame);

std::string encode(const sync::Envelope& envelope);
sync::Envelope error_envelope(sync::Error::Code code, const std::string& message, bool fatal);
std::string error_frame(sync::Error::Code code, const std::string& message, bool fatal);

// The sync error code for a runtime Status (what a client is told when the server fails).
sync::Error::Code error_code_for(const Status& status);

// Checks a hello's fields other than the token: protocol version, a 16-byte site id, a
// 16-byte or empty server site id, a non-negative cursor, a short client name. The Error
// to send when refused.
bool check_hello(const sync::Hello& hello, sync::Error* refusal);

// Short text for logs: "push seq=3 changes=120 v(10,14]". Text that came from the peer
// is escaped (log_escape).
std::string describe(const sync::Envelope& envelope);

// Peer-supplied text made safe for a one-line log record: printable ASCII is kept, a quote
// and a backslash are escaped, every other byte (a newline, a control character, a byte of
// a non-ASCII character) is written as \n, \t, \r or \xNN. At most `max` bytes of input
// are shown (then "...").
std::string log_escape(const std::string& text, size_t max = 256);

// The cells a batch carries, for following one change through the logs:
// "todo[1].title todo[1].done" (at most `max` cells, then "+N more"; "-" when empty).
std::string cells(const change::ChangeBatch& batch, int max = 4);

}  // namespace tandem::sync_frames
