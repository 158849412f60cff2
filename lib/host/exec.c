/* exec: the image about to be replaced ends its trace with END (kind EXEC)
 * and CLEAN_EXIT, since no destructor or exit handler will run for it; the
 * new image starts a trace of its own (flagged EXEC_IMAGE). If the exec
 * fails, the END is turned back into a TIME record and recording goes on.
 *
 * glibc's exec* functions call its internal execve directly, so each one
 * is wrapped. A vfork child shares the parent's memory: it must not touch
 * the parent's trace, which the pid check guarantees. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

static bool exec_prepare(void)
{
	struct htr_file_header *h = htr_tracefile_header();
	if (!htr_recording() || h == NULL || h->pid != (uint32_t)getpid())
		return false;
	int expected = HTR_ST_ON;
	if (!__atomic_compare_exchange_n(&htr_state, &expected, HTR_ST_OFF, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return false;
	htr_tracefile_finish(HTR_END_EXEC, 0);
	return true;
}

static void exec_failed(bool prepared)
{
	if (!prepared)
		return;
	int saved_errno = errno;
	htr_tracefile_resume();
	__atomic_store_n(&htr_state, HTR_ST_ON, __ATOMIC_RELEASE);
	errno = saved_errno;
}

static void *next(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

#define REAL(type, name)                                       \
	type real_ = NULL;                                     \
	do {                                                   \
		void *sym_ = next(name);                       \
		memcpy(&real_, &sym_, sizeof(sym_));           \
	} while (0)

/* Every exec form does the same around the real call: END(EXEC) first, and
 * if the call returns (it failed), that END is taken back. */
#define EXEC_THROUGH(type, name, ...)                          \
	do {                                                   \
		REAL(type, name);                              \
		if (real_ == NULL) {                           \
			errno = ENOSYS;                        \
			return -1;                             \
		}                                              \
		bool prepared_ = exec_prepare();               \
		int rc_ = real_(__VA_ARGS__);                  \
		exec_failed(prepared_);                        \
		return rc_;                                    \
	} while (0)

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execvp_fn)(const char *, char *const[]);
typedef int (*execvpe_fn)(const char *, char *const[], char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);
typedef int (*execveat_fn)(int, const char *, char *const[], char *const[], int);

HTR_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	EXEC_THROUGH(execve_fn, "execve", path, argv, envp);
}

HTR_EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

HTR_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	EXEC_THROUGH(execvpe_fn, "execvpe", file, argv, envp);
}

HTR_EXPORT int execvp(const char *file, char *const argv[])
{
	EXEC_THROUGH(execvp_fn, "execvp", file, argv);
}

HTR_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	EXEC_THROUGH(fexecve_fn, "fexecve", fd, argv, envp);
}

HTR_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
			int flags)
{
	EXEC_THROUGH(execveat_fn, "execveat", dirfd, path, argv, envp, flags);
}

/* The list forms: the arguments are gathered on the stack (no malloc in a
 * process that may be a vfork child). */
static size_t count_args(const char *arg0, va_list ap)
{
	size_t n = 1;
	if (arg0 == NULL)
		return 0;
	while (va_arg(ap, const char *) != NULL)
		n++;
	return n;
}

/* Declares `argv` on the caller's stack holding arg and the variadic
 * arguments after it, NULL-terminated, and leaves `ap_` open past the
 * terminating NULL (execle reads envp there). A macro, not a function: the
 * array must live in the exec wrapper's own frame. */
#define ARGV_FROM_LIST(argv, arg)                                       \
	va_list ap_;                                                    \
	va_start(ap_, arg);                                             \
	size_t n_ = count_args(arg, ap_);                               \
	va_end(ap_);                                                    \
	char *argv[n_ + 1];                                             \
	va_start(ap_, arg);                                             \
	argv[0] = (char *)(arg);                                        \
	for (size_t i_ = 1; i_ < n_; i_++)                              \
		argv[i_] = va_arg(ap_, char *);                         \
	if (n_ > 0)                                                     \
		(void)va_arg(ap_, char *); /* the terminating NULL */   \
	argv[n_] = NULL

HTR_EXPORT int execl(const char *path, const char *arg, ...)
{
	ARGV_FROM_LIST(argv, arg);
	va_end(ap_);
	return execve(path, argv, environ);
}

HTR_EXPORT int execlp(const char *file, const char *arg, ...)
{
	ARGV_FROM_LIST(argv, arg);
	va_end(ap_);
	return execvp(file, argv);
}

HTR_EXPORT int execle(const char *path, const char *arg, ...)
{
	ARGV_FROM_LIST(argv, arg);
	char *const *envp = va_arg(ap_, char *const *);
	va_end(ap_);
	return execve(path, argv, envp);
}
