// Misuse of every kind, then normal work: the program must keep running and
// exit 0. Also every correct new/delete pair, once each, in order.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "heaptrail.h"

struct alignas(64) Wide {
	char c[64];
};

static int global_object;
static void *volatile sink;

int main()
{
	htr_mark("forms");
	// Correct pairs, sizes 3001.. so the test can find them.
	sink = ::operator new(3001);
	::operator delete(sink);
	sink = ::operator new[](3002);
	::operator delete[](sink);
	sink = ::operator new(3003, std::nothrow);
	::operator delete(sink, std::nothrow);
	sink = ::operator new[](3004, std::nothrow);
	::operator delete[](sink, std::nothrow);
	sink = ::operator new(3005);
	::operator delete(sink, static_cast<std::size_t>(3005));
	sink = ::operator new[](3006);
	::operator delete[](sink, static_cast<std::size_t>(3006));
	sink = ::operator new(3007, std::align_val_t(64));
	::operator delete(sink, std::align_val_t(64));
	sink = ::operator new[](3008, std::align_val_t(128));
	::operator delete[](sink, std::align_val_t(128));
	sink = ::operator new(3009, std::align_val_t(256), std::nothrow);
	::operator delete(sink, std::align_val_t(256), std::nothrow);
	sink = ::operator new[](3010, std::align_val_t(512), std::nothrow);
	::operator delete[](sink, std::align_val_t(512), std::nothrow);
	sink = ::operator new(3011, std::align_val_t(64));
	::operator delete(sink, static_cast<std::size_t>(3011), std::align_val_t(64));
	sink = ::operator new[](3012, std::align_val_t(64));
	::operator delete[](sink, static_cast<std::size_t>(3012), std::align_val_t(64));
	Wide *w = new Wide; // aligned new through a type
	delete w;

	htr_mark("misuse");
	char *p = static_cast<char *>(std::malloc(4001));
	std::free(p);
	std::free(p);           // double free
	char *q = static_cast<char *>(std::malloc(4002));
	std::free(q + 8);       // interior
	int local = 0;
	std::free(&local);      // stack
	std::free(&global_object); // global
	std::free(reinterpret_cast<void *>(0x10)); // garbage
	int *n = new int(5);    // new / free
	std::free(n);
	int *arr = new int[1001]; // new[] / delete
	delete static_cast<int *>(arr);
	char *m = static_cast<char *>(std::malloc(4003)); // malloc / delete
	delete reinterpret_cast<int *>(m);
	int *single = new int(7); // new / delete[]
	delete[] single;
	htr_mark("after");
	std::free(q); // q is still live and fine

	htr_mark("oom");
	const std::size_t huge = SIZE_MAX / 2;
	if (std::malloc(huge) != nullptr)
		return 30;
	bool caught = false;
	try {
		sink = ::operator new(huge);
	} catch (const std::bad_alloc &) {
		caught = true;
	}
	if (!caught || ::operator new[](huge, std::nothrow) != nullptr)
		return 31;
	htr_mark("done");
	std::printf("still running\n");
	return 0;
}
