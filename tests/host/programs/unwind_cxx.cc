// C++ frames for test_unwind: operator new reached from libstdc++'s own
// code (std::string's and std::map's allocations), where the probe compares
// the recorder's walk with libunwind's.
#include <cstdlib>
#include <map>
#include <new>
#include <string>

extern "C" int htr_test_probe(void);

static int probe_status = -1;
static bool probing;

void *operator new(std::size_t n)
{
	if (probing) {
		probing = false; // the first allocation is enough
		probe_status = htr_test_probe();
	}
	void *p = std::malloc(n ? n : 1);
	if (p == nullptr)
		throw std::bad_alloc();
	return p;
}

void operator delete(void *p) noexcept
{
	std::free(p);
}

void operator delete(void *p, std::size_t) noexcept
{
	std::free(p);
}

// Returns the probe's status for a std::string growth and for a std::map
// insertion: 0 when both matched, else the first non-zero status.
extern "C" int htr_test_cxx_frames(void)
{
	std::string s(8, 'x');
	probing = true;
	probe_status = -1;
	s.append(std::string(100, 'y').c_str()); // reallocation inside libstdc++
	int first = probe_status;
	std::map<int, std::string> m;
	probing = true;
	probe_status = -1;
	m[42] = s;
	int second = probe_status;
	return first != 0 ? first : second;
}
