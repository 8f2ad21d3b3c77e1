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
