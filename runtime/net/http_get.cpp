// Boost.Beast's synchronous client under one deadline: the socket's expiry (beast's
// tcp_stream) bounds resolve-free connect, TLS handshake, write and read together.
#include "runtime/net/http_get.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "runtime/net/websocket.hpp"

namespace tandem::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

template <class Stream>
Result<HttpGetAnswer> exchange(Stream& stream, const Url& url, const HttpGetOptions& options) {
  http::request<http::empty_body> req{http::verb::get, url.target, 11};
  req.set(http::field::host, url.host);
  req.set(http::field::user_agent, "tandem");
  if (!options.authorization.empty()) req.set(http::field::authorization, options.authorization);
  beast::error_code ec;
  http::write(stream, req, ec);
  if (ec) return Status::Unavailable("sending the request: " + ec.message());
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res, ec);
  if (ec) return Status::Unavailable("reading the answer: " + ec.message());
  return HttpGetAnswer{static_cast<int>(res.result_int()), std::move(res.body())};
}

}  // namespace

Result<HttpGetAnswer> http_get(const std::string& text, const HttpGetOptions& options) {
  // One URL grammar for the whole project: parse_url's, with the HTTP schemes mapped.
  std::string as_ws;
  if (text.rfind("http://", 0) == 0) as_ws = "ws://" + text.substr(7);
  else if (text.rfind("https://", 0) == 0) as_ws = "wss://" + text.substr(8);
  else return Status::InvalidArgument("URL '" + text + "' must start with http:// or https://");
  TANDEM_ASSIGN_OR_RETURN(Url url, parse_url(as_ws));

  asio::io_context ioc;
  asio::ip::tcp::resolver resolver(ioc);
  beast::error_code ec;
  auto endpoints = resolver.resolve(url.host, std::to_string(url.port), ec);
  if (ec) return Status::Unavailable("resolving " + url.host + ": " + ec.message());
  const std::string where = url.host + ":" + std::to_string(url.port);
  try {
    if (!url.tls) {
      beast::tcp_stream stream(ioc);
      stream.expires_after(options.timeout);
      stream.connect(endpoints);
      return exchange(stream, url, options);
    }
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.set_verify_mode(asio::ssl::verify_peer);
    if (options.ca_file.empty()) ctx.set_default_verify_paths();
    else ctx.load_verify_file(options.ca_file);
    ctx.set_verify_callback(asio::ssl::host_name_verification(url.host));
    beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
    beast::get_lowest_layer(stream).expires_after(options.timeout);
    beast::get_lowest_layer(stream).connect(endpoints);
    stream.handshake(asio::ssl::stream_base::client);
    return exchange(stream, url, options);
  } catch (const boost::system::system_error& e) {
    return Status::Unavailable(where + ": " + e.code().message());
  }
}

}  // namespace tandem::net
