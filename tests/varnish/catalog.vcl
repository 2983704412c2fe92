vcl 4.1;

# Varnish in front of catalog_server, purged by tag through the xkey vmod
# (Debian package varnish-modules). The origin's varnish_backend sends each
# response's tags in an `xkey` header, and invalidates a tag with
#   PURGE / HTTP/1.1
#   xkey-purge: <tag>        (or xkey-softpurge: <tag>)
# answered 200 with the number of objects purged in the reason and body.
#
# ORIGIN_HOST and ORIGIN_PORT are placeholders: tests/support/varnish_server.hpp
# replaces them; in production, write the address in.

import xkey;

backend origin {
  .host = "ORIGIN_HOST";
  .port = "ORIGIN_PORT";
}

# Who may purge: the origin servers. Loopback here.
acl purgers {
  "127.0.0.1";
  "::1";
}

sub vcl_recv {
  if (req.method == "PURGE") {
    if (client.ip !~ purgers) {
      return (synth(403, "Forbidden"));
    }
    if (req.http.xkey-purge) {
      set req.http.x-purged = xkey.purge(req.http.xkey-purge);
    } elsif (req.http.xkey-softpurge) {
      set req.http.x-purged = xkey.softpurge(req.http.xkey-softpurge);
    } else {
      return (synth(400, "PURGE needs an xkey-purge or xkey-softpurge header"));
    }
    return (synth(200, "Purged " + req.http.x-purged));
  }
  # Everything else: the built-in vcl_recv (GET and HEAD cached, requests
  # with Cookie or Authorization passed).
}

sub vcl_synth {
  if (req.method == "PURGE") {
    set resp.http.Content-Type = "text/plain; charset=utf-8";
    set resp.body = resp.reason + {"
"};
    return (deliver);
  }
}

sub vcl_deliver {
  # The tags are for Varnish only.
  unset resp.http.xkey;
}
