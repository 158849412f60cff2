// Workload (d): std::map and std::string churn, the allocation pattern of a
// C++ program that keys a cache by strings. Keys and values are longer than
// the small-string buffer, so each insert makes a node and two heap strings.
// Usage: wl_cxx [PAIRS]   (default 2,000,000; about 4 M heap events)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

namespace {

// Keeps the lookups from being optimised away without printing anything.
volatile std::size_t sink;

std::uint32_t next(std::uint32_t &s)
{
	s ^= s << 13;
	s ^= s >> 17;
	s ^= s << 5;
	return s;
}

// Built piecewise on purpose: the temporaries are part of the churn.
std::string make_key(std::uint32_t k)
{
	std::string key = "session/";
	key += std::to_string(k % 8192u);
	key += "/user-profile-cache-entry";
	return key;
}

}  // namespace

int main(int argc, char **argv)
{
	long pairs = 2000000;
	if (argc > 1) {
		char *end = nullptr;
		pairs = std::strtol(argv[1], &end, 10);
		if (end == argv[1] || *end != '\0' || pairs <= 0) {
			std::fprintf(stderr, "wl_cxx: expected a positive count, got '%s'\n", argv[1]);
			return 2;
		}
	}
	// Measured with the counting preload: about 4.5 events per operation, so
	// this gives roughly the 4 M events of (a).
	long ops = pairs * 9 / 20;
	std::uint32_t rng = 0x7f4a7c15u;
	std::map<std::string, std::string> cache;
	std::size_t checksum = 0;

	for (long i = 0; i < ops; i++) {
		std::uint32_t r = next(rng);
		std::string key = make_key(r);
		if (r & 0x10000u) {
			std::string value(24 + (r & 63u), static_cast<char>('a' + (r & 15u)));
			cache[key] = value;
		} else {
			auto it = cache.find(key);
			if (it != cache.end()) {
				checksum += it->second.size();
				cache.erase(it);
			}
		}
	}
	checksum += cache.size();
	sink = checksum;
	return 0;
}
