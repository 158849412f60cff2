/* One of two libraries test_unwind loads in turn at (most likely) the same
 * address: identical code but for the frame size, so a rule cached for one
 * is wrong for the other at the same return address. */
#ifndef UNWIND_LIB_FRAME
#define UNWIND_LIB_FRAME 4000
#endif

int unwind_lib_call(int (*fn)(void));

__attribute__((visibility("default"), noinline)) int unwind_lib_call(int (*fn)(void))
{
	volatile char frame[UNWIND_LIB_FRAME];
	frame[0] = 1;
	int r = fn();
	return frame[0] == 1 ? r : -1;
}
