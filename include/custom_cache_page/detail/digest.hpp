// Message digests through OpenSSL's EVP interface.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace custom_cache_page::detail {

inline std::string to_hex(unsigned char const* data, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(size * 2, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 0x0f];
  }
  return out;
}

// The digest of `data` under `md`, raw bytes in `out` (EVP_MAX_MD_SIZE long);
// returns the digest length. The context is reused per thread: allocating
// one per call costs more than hashing a cache key.
inline unsigned digest(EVP_MD const* md, std::string_view data, unsigned char* out) {
  thread_local std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  unsigned len = 0;
  if (md == nullptr || !ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 || EVP_DigestFinal_ex(ctx.get(), out, &len) != 1)
    throw std::runtime_error("OpenSSL digest failed");
  return len;
}

// Fetched once: an implicit fetch on every call costs more than the hash.
inline EVP_MD const* sha256_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}
inline EVP_MD const* md5_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "MD5", nullptr);
  return md;
}

inline std::string sha256_hex(std::string_view data) {
  unsigned char buf[EVP_MAX_MD_SIZE];
  return to_hex(buf, digest(sha256_md(), data, buf));
}

inline std::string md5_hex(std::string_view data) {
  unsigned char buf[EVP_MAX_MD_SIZE];
  return to_hex(buf, digest(md5_md(), data, buf));
}

} // namespace custom_cache_page::detail
