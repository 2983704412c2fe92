#include "../support/redis_server.hpp"

#include <catch2/catch.hpp>

TEST_CASE("the redis fixture serves a real redis-server through hiredis", "[redis][fixture]") {
  auto& server = ccp_test::redis_server::shared();
  auto ctx = server.connect();

  auto command = [&](auto... args) {
    auto* reply = static_cast<redisReply*>(redisCommand(ctx.get(), args...));
    REQUIRE(reply != nullptr);
    std::string text = reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS
                           ? std::string(reply->str, reply->len)
                           : std::to_string(reply->integer);
    freeReplyObject(reply);
    return text;
  };

  CHECK(command("SET %s %b", "ccp:test:key", "va\0lue", std::size_t{6}) == "OK");
  CHECK(command("GET %s", "ccp:test:key") == std::string("va\0lue", 6));
  // No persistence: the fixture's server must not write snapshots.
  auto* save = static_cast<redisReply*>(redisCommand(ctx.get(), "CONFIG GET save"));
  REQUIRE(save != nullptr);
  REQUIRE(save->type == REDIS_REPLY_ARRAY);
  REQUIRE(save->elements == 2);
  CHECK(std::string(save->element[1]->str, save->element[1]->len).empty());
  freeReplyObject(save);
  CHECK(command("DEL %s", "ccp:test:key") == "1");
}

TEST_CASE("the redis fixture restarts on the port it had", "[redis][fixture]") {
  auto& server = ccp_test::redis_server::shared();
  auto const port = server.port();
  server.stop();
  CHECK_FALSE(server.running());
  CHECK_THROWS(server.connect());
  server.start();
  CHECK(server.running());
  CHECK(server.port() == port);
  auto ctx = server.connect();
  auto reply = ccp_test::command(ctx.get(), {"PING"});
  CHECK(std::string(reply->str, reply->len) == "PONG");
}
