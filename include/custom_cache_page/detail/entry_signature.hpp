// Signed entries: an HMAC-SHA256 (OpenSSL) after each stored value, over
// the key it is stored under and the value, so that whoever can write to a
// shared store but lacks the secret can neither forge an entry nor move a
// signed one to another key.
#pragma once

#include <custom_cache_page/error.hpp>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace custom_cache_page::detail {

class entry_signer {
public:
  static constexpr std::size_t size = 32; // SHA-256
  static constexpr std::size_t min_secret = 16;

  explicit entry_signer(std::string secret) : secret_(std::move(secret)) {
    if (secret_.size() < min_secret)
      throw cache_error(error::bad_configuration, "the entry signing secret is " + std::to_string(secret_.size()) +
                                                      " bytes long: it needs at least " + std::to_string(min_secret));
  }

  // Appends the signature of `value` stored under `key`.
  void sign(std::string& value, std::string_view key) const {
    std::array<unsigned char, size> mac{};
    compute(key, value, mac.data());
    value.append(reinterpret_cast<char const*>(mac.data()), mac.size());
  }

  // The value without its signature; nothing when the signature is
  // missing or is not this secret's for `key`.
  std::optional<std::string_view> verify(std::string_view signed_value, std::string_view key) const {
    if (signed_value.size() < size) return std::nullopt;
    auto const value = signed_value.substr(0, signed_value.size() - size);
    std::array<unsigned char, size> mac{};
    compute(key, value, mac.data());
    if (CRYPTO_memcmp(mac.data(), signed_value.data() + value.size(), size) != 0) return std::nullopt;
    return value;
  }

private:
  // HMAC over the key's length (8 bytes, big-endian), the key and the value.
  void compute(std::string_view key, std::string_view value, unsigned char* out) const {
    static EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    thread_local std::unique_ptr<EVP_MAC_CTX, void (*)(EVP_MAC_CTX*)> ctx(hmac ? EVP_MAC_CTX_new(hmac) : nullptr, &EVP_MAC_CTX_free);
    std::array<unsigned char, 8> length{};
    for (std::size_t i = 0; i < length.size(); ++i) length[i] = static_cast<unsigned char>(std::uint64_t{key.size()} >> (56 - 8 * i));
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
    std::size_t written = 0;
    if (!ctx || EVP_MAC_init(ctx.get(), reinterpret_cast<unsigned char const*>(secret_.data()), secret_.size(), params) != 1 ||
        EVP_MAC_update(ctx.get(), length.data(), length.size()) != 1 ||
        EVP_MAC_update(ctx.get(), reinterpret_cast<unsigned char const*>(key.data()), key.size()) != 1 ||
        EVP_MAC_update(ctx.get(), reinterpret_cast<unsigned char const*>(value.data()), value.size()) != 1 ||
        EVP_MAC_final(ctx.get(), out, &written, size) != 1 || written != size)
      throw cache_error(error::store_unavailable, "OpenSSL HMAC-SHA256 failed");
  }

  std::string secret_;
};

} // namespace custom_cache_page::detail
