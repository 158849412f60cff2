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

// Returns the probe's status under the first allocation of a std::string
// append (which 0: made in libstdc++'s out-of-line _M_append/_M_create) or
// of a std::map insertion (which 1: the node, from template code here).
extern "C" int htr_test_cxx_frames(int which)
{
	std::string s(8, 'x');
	std::string tail(100, 'y');
	std::map<int, std::string> m;
	probe_status = -1;
	probing = true;
	if (which == 0)
		s.append(tail.c_str());
	else
		m[42] = s;
	probing = false;
	return probe_status;
}
