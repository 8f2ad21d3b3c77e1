#include "runtime/sync/frames.hpp"

#include <algorithm>

namespace tandem::sync_frames {

Decoded decode(const std::string& frame) {
  Decoded d;
  if (!d.envelope.ParseFromString(frame)) {
    d.error.set_code(sync::Error::MALFORMED);
    d.error.set_message("frame of " + std::to_string(frame.size()) + " bytes is not a tandem.sync.Envelope");
    d.error.set_fatal(true);
    return d;
  }
  if (d.envelope.kind_case() == sync::Envelope::KIND_NOT_SET) {
    d.error.set_code(sync::Error::UNKNOWN_MESSAGE);
    d.error.set_message("envelope carries no message this protocol version knows");
    d.error.set_fatal(true);
    return d;
  }
  d.ok = true;
  return d;
}

std::string encode(const sync::Envelope& envelope) { return envelope.SerializeAsString(); }

std::optional<std::string> pong_for(const std::string& frame) {
  // Envelope.ping is field 8, length-delimited: tag byte 0x42. A Ping envelope is at most
  // 1 + 1 + 11 bytes; anything larger or starting otherwise is not one.
  constexpr char kPingTag = (8 << 3) | 2;
  if (frame.empty() || frame.size() > 16 || frame[0] != kPingTag) return std::nullopt;
  sync::Envelope e;
  if (!e.ParseFromString(frame) || e.kind_case() != sync::Envelope::kPing) return std::nullopt;
  sync::Envelope pong;
  pong.mutable_pong()->set_nonce(e.ping().nonce());
  return encode(pong);
}

size_t fragment_bytes_for(uint64_t max_frame_bytes) {
  if (max_frame_bytes == 0) return kFragmentBytes;
  return static_cast<size_t>(std::clamp<uint64_t>(max_frame_bytes > 64 ? max_frame_bytes - 64 : 1, 1, kFragmentBytes));
}

void send_frames(sync::Envelope&& envelope, const std::function<void(std::string frame)>& send, size_t fragment_bytes) {
  fragment_bytes = std::clamp<size_t>(fragment_bytes, 1, kFragmentBytes);
  std::string whole = envelope.SerializeAsString();
  envelope.Clear();
  {
    sync::Envelope released;  // Clear() keeps sub-messages' memory; swapping frees it
    envelope.Swap(&released);
  }
  if (whole.size() <= fragment_bytes) {
    send(std::move(whole));
    return;
  }
  for (size_t offset = 0; offset < whole.size(); offset += fragment_bytes) {
    sync::Envelope piece;
    auto* f = piece.mutable_fragment();
    f->set_total_bytes(whole.size());
    f->set_offset(offset);
    f->set_data(whole.data() + offset, std::min(fragment_bytes, whole.size() - offset));
    send(piece.SerializeAsString());
  }
}

void Reassembler::reset() {
  total_ = 0;
  std::string().swap(buffer_);
}

bool Reassembler::add(sync::Fragment&& fragment, std::optional<sync::Envelope>* complete, sync::Error* error) {
  complete->reset();
  auto refuse = [&](const std::string& message) {
    error->set_code(sync::Error::PROTOCOL);
    error->set_message(message);
    error->set_fatal(true);
    reset();
    return false;
  };
  const uint64_t total = fragment.total_bytes();
  if (fragment.data().empty()) return refuse("a fragment without data");
  if (total_ == 0) {
    if (fragment.offset() != 0) return refuse("a fragment at offset " + std::to_string(fragment.offset()) + " starts no message");
    if (total > max_)
      return refuse("a fragmented message of " + std::to_string(total) + " bytes is larger than the limit of " +
                    std::to_string(max_) + " bytes");
    total_ = total;
    buffer_.reserve(total);
  } else if (total != total_ || fragment.offset() != buffer_.size()) {
    return refuse("a fragment (offset " + std::to_string(fragment.offset()) + " of " + std::to_string(total) +
                  ") does not continue the message under way (" + std::to_string(buffer_.size()) + " of " +
                  std::to_string(total_) + " bytes received)");
  }
  if (fragment.data().size() > total_ - buffer_.size()) return refuse("a fragment goes past its message's end");
  buffer_.append(fragment.data());
  fragment.clear_data();
  if (buffer_.size() < total_) return true;

  sync::Envelope envelope;
  const bool parsed = envelope.ParseFromString(buffer_);
  reset();
  if (!parsed) {
    error->set_code(sync::Error::MALFORMED);
    error->set_message("a reassembled message of " + std::to_string(total) + " bytes is not a tandem.sync.Envelope");
    error->set_fatal(true);
    return false;
  }
  if (!envelope.has_push() && !envelope.has_forward())
    return refuse("only a Push or a Forward may be fragmented, not " + describe(envelope));
  complete->emplace(std::move(envelope));
  return true;
}

sync::Envelope error_envelope(sync::Error::Code code, const std::string& message, bool fatal) {
  sync::Envelope e;
  auto* err = e.mutable_error();
  err->set_code(code);
  err->set_message(message);
  err->set_fatal(fatal);
  return e;
}

std::string error_frame(sync::Error::Code code, const std::string& message, bool fatal) {
  return encode(error_envelope(code, message, fatal));
}

sync::Error::Code error_code_for(const Status& status) {
  switch (status.code()) {
    case StatusCode::invalid_argument:
    case StatusCode::constraint:
    case StatusCode::unsupported:
    case StatusCode::not_found: return sync::Error::REJECTED;
    case StatusCode::unauthenticated: return sync::Error::UNAUTHENTICATED;
    case StatusCode::permission_denied: return sync::Error::PERMISSION_DENIED;
    case StatusCode::unavailable:
    case StatusCode::resource_exhausted: return sync::Error::UNAVAILABLE;
    default: return sync::Error::INTERNAL;
  }
}

bool check_hello(const sync::Hello& hello, sync::Error* refusal) {
  auto refuse = [&](sync::Error::Code code, const std::string& message) {
    refusal->set_code(code);
    refusal->set_message(message);
    refusal->set_fatal(true);
    return false;
  };
  if (hello.protocol_version() != kProtocolVersion)
    return refuse(sync::Error::UNSUPPORTED_VERSION, "protocol version " + std::to_string(hello.protocol_version()) +
                                                        " is not supported; this server speaks version " +
                                                        std::to_string(kProtocolVersion));
  if (hello.site_id().size() != 16)
    return refuse(sync::Error::MALFORMED, "hello.site_id must be 16 bytes, got " + std::to_string(hello.site_id().size()));
  if (!hello.server_site_id().empty() && hello.server_site_id().size() != 16)
    return refuse(sync::Error::MALFORMED, "hello.server_site_id must be empty or 16 bytes");
  if (hello.cursor() < 0) return refuse(sync::Error::MALFORMED, "hello.cursor must not be negative");
  if (hello.client_name().size() > 64) return refuse(sync::Error::MALFORMED, "hello.client_name longer than 64 bytes");
  if (hello.schema_size() > 1000) return refuse(sync::Error::MALFORMED, "hello.schema has more than 1000 statements");
  size_t schema_bytes = 0;
  for (const auto& statement : hello.schema()) {
    if (statement.size() > kMaxSchemaStatementBytes)
      return refuse(sync::Error::MALFORMED, "a hello.schema entry is longer than " + std::to_string(kMaxSchemaStatementBytes) +
                                                " bytes (" + std::to_string(statement.size()) + ")");
    schema_bytes += statement.size();
  }
  if (schema_bytes > kMaxSchemaBytes)
    return refuse(sync::Error::MALFORMED, "hello.schema is longer than " + std::to_string(kMaxSchemaBytes) + " bytes");
  return true;
}

std::string describe(const sync::Envelope& e) {
  auto range = [](const change::ChangeBatch& b) {
    return "changes=" + std::to_string(b.changes_size()) + " v(" + std::to_string(b.from_db_version()) + "," +
           std::to_string(b.to_db_version()) + "]";
  };
  switch (e.kind_case()) {
    case sync::Envelope::kHello: return "hello v" + std::to_string(e.hello().protocol_version()) + " cursor=" + std::to_string(e.hello().cursor());
    case sync::Envelope::kWelcome:
      return "welcome user=" + log_escape(e.welcome().user()) + " server_v=" + std::to_string(e.welcome().server_db_version()) +
             " client_acked=" + std::to_string(e.welcome().client_acked_db_version());
    case sync::Envelope::kPush: return "push seq=" + std::to_string(e.push().seq()) + " " + range(e.push().batch());
    case sync::Envelope::kAck:
      return "ack seq=" + std::to_string(e.ack().seq()) + " client_v=" + std::to_string(e.ack().client_acked_db_version()) +
             " server_v=" + std::to_string(e.ack().server_db_version());
    case sync::Envelope::kForward: return "forward seq=" + std::to_string(e.forward().seq()) + " " + range(e.forward().batch());
    case sync::Envelope::kClientAck:
      return "client_ack seq=" + std::to_string(e.client_ack().seq()) + " server_v=" + std::to_string(e.client_ack().server_db_version());
    case sync::Envelope::kError:
      return "error " + sync::Error::Code_Name(e.error().code()) + (e.error().fatal() ? " (fatal) " : " ") +
             log_escape(e.error().message(), 1024);
    case sync::Envelope::kPing: return "ping " + std::to_string(e.ping().nonce());
    case sync::Envelope::kPong: return "pong " + std::to_string(e.pong().nonce());
    case sync::Envelope::kFragment:
      return "fragment offset=" + std::to_string(e.fragment().offset()) + " bytes=" + std::to_string(e.fragment().data().size()) +
             " of " + std::to_string(e.fragment().total_bytes());
    default: return "unknown";
  }
}

std::string cells(const change::ChangeBatch& batch, int max) {
  if (batch.changes_size() == 0) return "-";
  std::string out;
  for (int i = 0; i < batch.changes_size() && i < max; ++i) {
    const auto& c = batch.changes(i);
    if (!out.empty()) out += ' ';
    out += log_escape(c.table(), 64) + "[";
    for (int k = 0; k < c.pk_size(); ++k) {
      const auto& v = c.pk(k);
      if (k) out += ',';
      if (v.has_integer()) out += std::to_string(v.integer());
      else if (v.has_real()) out += std::to_string(v.real());
      else if (v.has_text()) out += "'" + log_escape(v.text(), 16) + "'";
      else if (v.has_blob()) out += "x" + std::to_string(v.blob().size());
      else out += "NULL";
    }
    out += "]." + (c.cid() == "-1" ? std::string("(row)") : log_escape(c.cid(), 64));
  }
  if (batch.changes_size() > max) out += " +" + std::to_string(batch.changes_size() - max) + " more";
  return out;
}

std::string log_escape(const std::string& text, size_t max) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  const size_t n = std::min(text.size(), max);
  out.reserve(n + 8);
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    switch (c) {
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      default: break;
    }
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  if (text.size() > max) out += "...";
  return out;
}

}  // namespace tandem::sync_frames
