// Every form of operator new and delete, so that new/delete/free mismatches
// are seen. The operators allocate from the C library directly (not through
// libstdc++'s operator new, which would call our malloc and record twice),
// and keep the standard's new_handler loop.
#include <cstddef>
#include <cstdint>
#include <new>

extern "C" {
#include "internal.h"
}

namespace {

void *raw_alloc(std::size_t size, std::size_t align)
{
	htr_resolve_real();
	if (htr_real.malloc == nullptr)
		return htr_bootstrap_alloc(size, align ? align : 16);
	if (align == 0)
		return htr_real.malloc(size);
	// aligned_alloc in glibc takes any power of two and any size.
	return htr_real.aligned_alloc(align, size);
}

void *new_impl(uint8_t call, std::size_t size, std::size_t align, bool nothrow)
{
	for (;;) {
		void *p = raw_alloc(size, align);
		if (p != nullptr) {
			htr_note_alloc(call, p, size, align, nullptr, 0, false);
			return p;
		}
		std::new_handler handler = std::get_new_handler();
		if (handler == nullptr) {
			htr_note_alloc(call, nullptr, size, align, nullptr, 0, false);
			if (nothrow)
				return nullptr;
			throw std::bad_alloc();
		}
		if (nothrow) {
			try {
				handler();
			} catch (...) {
				htr_note_alloc(call, nullptr, size, align, nullptr, 0, false);
				return nullptr;
			}
		} else {
			handler();
		}
	}
}

inline void delete_impl(uint8_t call, void *p)
{
	htr_do_free(call, p, nullptr, 0);
}

} // namespace

#define NEW_KIND HTR_CALL_NEW
#define NEW_ARRAY_KIND HTR_CALL_NEW_ARRAY
#define ALIGN(a) static_cast<std::size_t>(a)

HTR_EXPORT void *operator new(std::size_t size) { return new_impl(NEW_KIND, size, 0, false); }
HTR_EXPORT void *operator new[](std::size_t size) { return new_impl(NEW_ARRAY_KIND, size, 0, false); }
HTR_EXPORT void *operator new(std::size_t size, const std::nothrow_t &) noexcept
{
	return new_impl(NEW_KIND, size, 0, true);
}
HTR_EXPORT void *operator new[](std::size_t size, const std::nothrow_t &) noexcept
{
	return new_impl(NEW_ARRAY_KIND, size, 0, true);
}
HTR_EXPORT void *operator new(std::size_t size, std::align_val_t a)
{
	return new_impl(NEW_KIND, size, ALIGN(a), false);
}
HTR_EXPORT void *operator new[](std::size_t size, std::align_val_t a)
{
	return new_impl(NEW_ARRAY_KIND, size, ALIGN(a), false);
}
HTR_EXPORT void *operator new(std::size_t size, std::align_val_t a, const std::nothrow_t &) noexcept
{
	return new_impl(NEW_KIND, size, ALIGN(a), true);
}
HTR_EXPORT void *operator new[](std::size_t size, std::align_val_t a, const std::nothrow_t &) noexcept
{
	return new_impl(NEW_ARRAY_KIND, size, ALIGN(a), true);
}

HTR_EXPORT void operator delete(void *p) noexcept { delete_impl(HTR_CALL_DELETE, p); }
HTR_EXPORT void operator delete[](void *p) noexcept { delete_impl(HTR_CALL_DELETE_ARRAY, p); }
HTR_EXPORT void operator delete(void *p, std::size_t) noexcept { delete_impl(HTR_CALL_DELETE, p); }
HTR_EXPORT void operator delete[](void *p, std::size_t) noexcept
{
	delete_impl(HTR_CALL_DELETE_ARRAY, p);
}
HTR_EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept
{
	delete_impl(HTR_CALL_DELETE, p);
}
HTR_EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept
{
	delete_impl(HTR_CALL_DELETE_ARRAY, p);
}
HTR_EXPORT void operator delete(void *p, std::align_val_t) noexcept
{
	delete_impl(HTR_CALL_DELETE, p);
}
HTR_EXPORT void operator delete[](void *p, std::align_val_t) noexcept
{
	delete_impl(HTR_CALL_DELETE_ARRAY, p);
}
HTR_EXPORT void operator delete(void *p, std::size_t, std::align_val_t) noexcept
{
	delete_impl(HTR_CALL_DELETE, p);
}
HTR_EXPORT void operator delete[](void *p, std::size_t, std::align_val_t) noexcept
{
	delete_impl(HTR_CALL_DELETE_ARRAY, p);
}
HTR_EXPORT void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept
{
	delete_impl(HTR_CALL_DELETE, p);
}
HTR_EXPORT void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept
{
	delete_impl(HTR_CALL_DELETE_ARRAY, p);
}
