// Boost.JSON's compiled part, for executables that link
// custom_cache_page::cdn (Debian ships no libboost_json). The target adds
// this file to each executable that links it: link custom_cache_page::cdn
// to executables only, and do not compile <boost/json/src.hpp> elsewhere.
#include <boost/json/src.hpp>
