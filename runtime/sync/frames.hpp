// Frames of the edge protocol (proto/sync.proto, docs/protocol.md): decoding with the
// checks every receiver needs, and building the common replies. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
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

// The Pong frame answering `frame` when it is a Ping, else nullopt. Cheap for every other
// frame (it looks at the size and the first byte), so a connection's I/O thread can answer
// pings itself instead of sending them through an actor and back (two thread hops).
std::optional<std::string> pong_for(const std::string& frame);

// Fragments (docs/protocol.md, "Fragments"): a Push or Forward whose serialized Envelope is
// larger than kFragmentBytes travels as consecutive Fragment frames of kFragmentBytes of it
// each (the last one shorter), so that no frame comes near the transport's limit.
inline constexpr size_t kFragmentBytes = size_t{1} << 20;
// The largest message a receiver reassembles: a row of the largest values a store accepts,
// with room for its key, clocks and envelope.
inline constexpr uint64_t kMaxMessageBytes = uint64_t{320} << 20;

// Serializes `envelope` (consumed: its memory is released before the frames are built, so a
// large value is held once as a message and once as frames, not more) and hands each frame
// to `send`, in order: one frame, or the Fragment frames of it.
// `fragment_bytes` (at most kFragmentBytes) is smaller when the peer's frame limit is.
void send_frames(sync::Envelope&& envelope, const std::function<void(std::string frame)>& send,
                 size_t fragment_bytes = kFragmentBytes);
// The fragment size for a peer whose frames may hold `max_frame_bytes` (0: unknown): room
// is left for the Fragment's own fields.
size_t fragment_bytes_for(uint64_t max_frame_bytes);

// Rebuilds fragmented messages of one connection and direction. A message is acted on only
// when its last fragment arrived, so a connection lost in the middle leaves nothing behind
// but this buffer (reset() drops it).
class Reassembler {
 public:
  explicit Reassembler(uint64_t max_message_bytes = kMaxMessageBytes) : max_(max_message_bytes) {}
  // Adds one fragment. An error (ready to send, fatal) for a fragment that does not
  // continue the message under way or would make it larger than the bound. When the
  // fragment completes a message, *complete holds its decoded Envelope, which must be a
  // Push or a Forward (anything else, including a nested Fragment, is an error).
  bool add(sync::Fragment&& fragment, std::optional<sync::Envelope>* complete, sync::Error* error);
  void reset();
  bool active() const { return total_ > 0; }
  uint64_t received() const { return buffer_.size(); }

 private:
  uint64_t max_;
  uint64_t total_ = 0;  // 0: no message under way
  std::string buffer_;
};
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
