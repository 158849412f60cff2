// Allocations in static destructors and atexit handlers, after main: they
// must be recorded (or at least never crash the program).
#include <cstdio>
#include <cstdlib>
#include <string>

static void *volatile sink;

struct Late {
	~Late()
	{
		sink = std::malloc(8001);
		std::free(sink);
	}
};
static Late late;

static void handler()
{
	std::string s(100, 'x');
	sink = std::malloc(8002);
	std::free(sink);
}

int main()
{
	std::atexit(handler);
	std::printf("main done\n");
	return 0;
}
