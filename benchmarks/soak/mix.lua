-- The soak's load: product pages and list pages in turn, every one cached.
local categories = {"books", "games", "music", "garden"}
local n = 0
request = function()
  n = n + 1
  if n % 4 == 0 then
    return wrk.format("GET", "/products?category=" .. categories[(n // 4) % 4 + 1] .. "&page=" .. (n % 3 + 1))
  end
  return wrk.format("GET", "/products/" .. (n % 40 + 1))
end
