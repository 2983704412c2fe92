# Varnish in front of page_server's /origin pages, for run.sh (which fills
# in the @...@ value). The builtin VCL caches them (Cache-Control: public,
# max-age=3600); X-Cache says whether an answer was a hit.
vcl 4.1;

backend origin {
  .host = "127.0.0.1";
  .port = "@ORIGIN_PORT@";
}

sub vcl_deliver {
  if (obj.hits > 0) {
    set resp.http.X-Cache = "HIT";
  } else {
    set resp.http.X-Cache = "MISS";
  }
}
