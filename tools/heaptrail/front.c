/* The `heaptrail` command: starts the Python CLI (the launcher script,
 * with -S: heaptrail needs no site-packages), and for a plain `heaptrail
 * report` or `heaptrail run` starts the engine or the program first.
 *
 * Python takes about 7 ms to start before it can run a line: a report is
 * mostly the engine's time, and a run the program's, so started from here
 * they run while Python starts on the other core (Mercurial's chg exists
 * for the same start-up cost). Nothing here decides anything: the
 * launcher is told what was started (HEAPTRAIL_EARLY_ENGINE,
 * HEAPTRAIL_EARLY_PROGRAM) and checks it against what it would have done
 * itself (tools/heaptrail/spawn.py, run_cmd.py). A command line is read
 * by the launcher's own tables (front_options.h is generated from
 * report_early.py and run_cmd.py), and anything unusual starts nothing:
 * a report's engine that the launcher did not want is ended, but a
 * program cannot be run twice, so for `run` this side is the stricter. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "front_options.h"
#include HTR_FRONT_PATHS /* the interpreter, the launcher, the engine and the recorder */

extern char **environ;

#define EARLY_ENV         "HEAPTRAIL_EARLY_ENGINE"
#define EARLY_PROGRAM_ENV "HEAPTRAIL_EARLY_PROGRAM"

/* The option of table spelt as name's first len bytes, NULL for none. */
#define FIND_OPTION(table, name, len) find_option(table, sizeof(table) / sizeof(table[0]), name, len)
static const struct front_option *find_option(const struct front_option *table, size_t n, const char *name,
                                              size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(table[i].name) == len && memcmp(table[i].name, name, len) == 0)
			return &table[i];
	return NULL;
}

/* ---- report ---- */

static bool is_choice(const char *const *choices, const char *value)
{
	for (; *choices; choices++)
		if (strcmp(*choices, value) == 0)
			return true;
	return false;
}

static bool is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* report_early.parse, for what the engine is asked: the inputs (first and
 * count in args) and --input-format. false: not plain enough to be sure. */
static bool parse_report(int argc, char **argv, int *first, int *count, const char **format)
{
	int start = -1, n = 0;
	bool after_inputs = false;
	*format = "auto";
	for (int i = 0; i < argc;) {
		const char *word = argv[i++];
		if (strcmp(word, "--") == 0) {
			if (n > 0 || i == argc)
				return false;
			start = i;
			n = argc - i;
			break;
		}
		if (word[0] != '-' || strcmp(word, "-") == 0) {
			if (after_inputs)
				return false;
			if (n++ == 0)
				start = i - 1;
			continue;
		}
		after_inputs = n > 0;
		const char *eq = strchr(word, '=');
		size_t len = eq ? (size_t)(eq - word) : strlen(word);
		const struct front_option *opt = FIND_OPTION(front_report_options, word, len);
		if (opt == NULL || (eq && (opt->kind == FRONT_FLAG || strncmp(word, "--", 2) != 0)))
			return false;
		if (opt->kind == FRONT_FLAG)
			continue;
		const char *value = eq ? eq + 1 : NULL;
		if (value == NULL) {
			if (i == argc || (argv[i][0] == '-' && strcmp(argv[i], "-") != 0))
				return false;
			value = argv[i++];
		}
		if (opt->choices != NULL && !is_choice(opt->choices, value))
			return false;
		if (strcmp(opt->field, "input_format") == 0)
			*format = value;
	}
	*first = start;
	*count = n;
	return n > 0;
}

/* "PID,OUT,ERR;" then each argument of the engine's command as
 * "LENGTH:BYTES": any byte but NUL may sit in a path. */
static char *describe(pid_t pid, int out, int err, char **cmd)
{
	size_t size = 64;
	for (char **a = cmd; *a; a++)
		size += strlen(*a) + 24;
	char *s = malloc(size);
	if (s == NULL)
		return NULL;
	int at = snprintf(s, size, "%d,%d,%d;", (int)pid, out, err);
	for (char **a = cmd; *a; a++)
		at += snprintf(s + at, size - (size_t)at, "%zu:%s", strlen(*a), *a);
	return s;
}

/* Starts the engine on a plain report's inputs, its output and errors on
 * pipes that the launcher inherits; says so in EARLY_ENV. Quietly does
 * nothing when it cannot: the launcher then starts the engine itself and
 * says why if that fails too. Returns the engine's pid, or 0. */
static pid_t start_engine(int argc, char **argv)
{
	int first, count;
	const char *format;
	if (!parse_report(argc, argv, &first, &count, &format) || !is_file(HTR_FRONT_ENGINE))
		return 0;
	for (int i = first; i < first + count; i++)
		if (!is_file(argv[i]) || access(argv[i], R_OK) != 0)
			return 0;
	/* With 0, 1 or 2 closed, a pipe would take its number, and Python its
	 * place as a standard stream. */
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0)
			return 0;
	char **cmd = calloc((size_t)count + 5, sizeof(*cmd));
	if (cmd == NULL)
		return 0;
	cmd[0] = (char *)HTR_FRONT_ENGINE; /* spawn.command() */
	cmd[1] = (char *)"--format";
	cmd[2] = (char *)format;
	cmd[3] = (char *)"--";
	memcpy(cmd + 4, argv + first, (size_t)count * sizeof(*cmd));
	int out[2] = {-1, -1}, err[2] = {-1, -1};
	pid_t pid = 0;
	posix_spawn_file_actions_t actions;
	bool have_actions = false;
	if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
		goto done;
	have_actions = posix_spawn_file_actions_init(&actions) == 0;
	if (!have_actions || posix_spawn_file_actions_adddup2(&actions, out[1], 1) != 0 ||
	    posix_spawn_file_actions_adddup2(&actions, err[1], 2) != 0 ||
	    posix_spawn(&pid, cmd[0], &actions, NULL, cmd, environ) != 0) {
		pid = 0;
		goto done;
	}
	/* The engine is not held up by a full pipe while Python starts. */
	(void)fcntl(out[1], F_SETPIPE_SZ, 1 << 20);
	char *said = describe(pid, out[0], err[0], cmd);
	if (said == NULL || setenv(EARLY_ENV, said, 1) != 0 || fcntl(out[0], F_SETFD, 0) != 0 ||
	    fcntl(err[0], F_SETFD, 0) != 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		unsetenv(EARLY_ENV);
		pid = 0;
	}
	free(said);
done:
	if (have_actions)
		posix_spawn_file_actions_destroy(&actions);
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0 && (i == 1 || pid == 0))
			close(out[i]);
		if (err[i] >= 0 && (i == 1 || pid == 0))
			close(err[i]);
	}
	free(cmd);
	return pid;
}

/* ---- run ---- */

/* run_cmd._parse_plain and _check_options. */
struct run_plan {
	const char *output;   /* NULL: heaptrail-<pid> */
	long depth, chunk_kb; /* -1: not given */
	const char *on_error; /* NULL: not given */
	char **program;
};

/* int(value) of a value of ASCII digits (str.isdigit() and isascii()), -1
 * for anything else; values above 10^9 stay above it, beyond every limit. */
static long plain_number(const char *value)
{
	long n = 0;
	for (const char *c = value; *c; c++) {
		if (*c < '0' || *c > '9')
			return -1;
		if (n < 1000000000L)
			n = n * 10 + (*c - '0');
	}
	return n;
}

static bool parse_run(int argc, char **argv, struct run_plan *plan)
{
	*plan = (struct run_plan){.depth = -1, .chunk_kb = -1};
	long exitcode = -1;
	int i = 0;
	while (i < argc && strcmp(argv[i], "--") != 0) {
		const char *word = argv[i];
		const char *eq = strchr(word, '=');
		size_t len = eq ? (size_t)(eq - word) : strlen(word);
		const struct front_option *opt = FIND_OPTION(front_run_options, word, len);
		if (!eq && opt != NULL && opt->kind == FRONT_FLAG) {
			i++;
			continue;
		}
		if (opt == NULL || opt->kind == FRONT_FLAG || (eq && strcmp(opt->name, "-o") == 0))
			return false;
		const char *value = eq ? eq + 1 : NULL;
		if (value == NULL) {
			if (i + 1 >= argc)
				return false;
			value = argv[++i];
		}
		i++;
		if (value[0] == '-' || value[0] == '\0')
			return false;
		long n = -1;
		if (strcmp(opt->field, "depth") == 0 || strcmp(opt->field, "chunk_kb") == 0 ||
		    strcmp(opt->field, "error_exitcode") == 0) {
			if ((n = plain_number(value)) < 0)
				return false;
		}
		if (strcmp(opt->field, "depth") == 0)
			plan->depth = n;
		else if (strcmp(opt->field, "chunk_kb") == 0)
			plan->chunk_kb = n;
		else if (strcmp(opt->field, "error_exitcode") == 0)
			exitcode = n;
		else if (strcmp(opt->field, "on_error") == 0 && strcmp(value, "continue") != 0 &&
		         strcmp(value, "abort") != 0)
			return false;
		else if (strcmp(opt->field, "on_error") == 0)
			plan->on_error = value;
		else if (strcmp(opt->field, "output") == 0)
			plan->output = value;
		else
			return false; /* a field this side does not know: the launcher's */
	}
	if (i + 1 >= argc || strcmp(argv[i + 1], "--") == 0)
		return false;
	plan->program = argv + i + 1;
	return (plan->depth < 0 || (plan->depth >= 1 && plan->depth <= 256)) &&
	       (plan->chunk_kb < 0 ||
	        (plan->chunk_kb % 4 == 0 && plan->chunk_kb >= 16 && plan->chunk_kb <= 65536)) &&
	       exitcode <= 255;
}

/* os.path.abspath(output or "heaptrail-<pid>"), for an output that
 * abspath leaves as it is (no "." or ".." or empty components): that
 * string is what the launcher compares. NULL otherwise. */
static char *run_outdir(const char *output)
{
	char name[32];
	if (output == NULL) {
		snprintf(name, sizeof(name), "heaptrail-%d", (int)getpid());
		output = name;
	}
	const char *c = output[0] == '/' ? output + 1 : output;
	for (;;) {
		size_t len = strcspn(c, "/");
		if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
			return NULL;
		if (c[len] == '\0')
			break;
		c += len + 1;
	}
	if (output[0] == '/')
		return strdup(output);
	char cwd[PATH_MAX];
	if (getcwd(cwd, sizeof(cwd)) == NULL || cwd[0] != '/')
		return NULL;
	char *dir;
	if (asprintf(&dir, "%s%s%s", cwd, cwd[1] == '\0' ? "" : "/", output) < 0)
		return NULL;
	return dir;
}

/* os.makedirs(dir, exist_ok=True), and the launcher's wish that it be a
 * directory it may write to, holding no traces yet (it would have to know
 * which were there before the program). */
static bool fresh_outdir(char *dir)
{
	for (char *c = dir + 1;; c++) {
		if (*c != '/' && *c != '\0')
			continue;
		char was = *c;
		*c = '\0';
		int rc = mkdir(dir, 0777), why = errno;
		*c = was;
		if (rc != 0 && why != EEXIST)
			return false;
		if (was == '\0')
			break;
	}
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0)
		return false;
	DIR *d = opendir(dir);
	if (d == NULL)
		return false;
	bool empty = true;
	for (struct dirent *e; empty && (e = readdir(d)) != NULL;) {
		size_t n = strlen(e->d_name);
		empty = !(strncmp(e->d_name, "heaptrail.", 10) == 0 && n >= 4 &&
		          strcmp(e->d_name + n - 4, ".htr") == 0);
	}
	closedir(d);
	return empty;
}

/* run_cmd._environment: the recorder appended to LD_PRELOAD, where the
 * traces go and the options the recorder reads. An LD_PRELOAD that Python's
 * str.strip() might read otherwise than this side (anything but printable
 * ASCII) starts nothing. */
/* One NAME=VALUE of our own into *slot; NULL there when out of memory. */
static bool __attribute__((format(printf, 2, 3))) add_var(char **slot, const char *format, ...)
{
	va_list args;
	va_start(args, format);
	int n = vasprintf(slot, format, args);
	va_end(args);
	if (n < 0)
		*slot = NULL;
	return n >= 0;
}

/* run_environment's array, and the strings it made from *ours_at on. */
static void free_environment(char **env, size_t ours_at)
{
	for (size_t i = ours_at; env[i] != NULL; i++)
		free(env[i]);
	free(env);
}

static char **run_environment(const struct run_plan *plan, const char *outdir, size_t *ours_at)
{
	static const char *const ours[] = {"LD_PRELOAD=", "HEAPTRAIL_OUTPUT=", "HEAPTRAIL_DEPTH=",
	                                   "HEAPTRAIL_ON_ERROR=", "HEAPTRAIL_CHUNK_KB="};
	const char *preload = getenv("LD_PRELOAD");
	if (preload == NULL)
		preload = "";
	for (const char *c = preload; *c; c++)
		if (*c < ' ' || *c > '~')
			return NULL;
	while (*preload == ' ')
		preload++;
	size_t plen = strlen(preload);
	while (plen > 0 && preload[plen - 1] == ' ')
		plen--;
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 6, sizeof(*env));
	if (env == NULL)
		return NULL;
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		bool replaced = false;
		for (size_t k = 0; k < sizeof(ours) / sizeof(ours[0]); k++) {
			bool given = k < 2 || (k == 2 && plan->depth >= 0) || (k == 3 && plan->on_error) ||
			             (k == 4 && plan->chunk_kb >= 0);
			if (given && strncmp(environ[i], ours[k], strlen(ours[k])) == 0)
				replaced = true;
		}
		if (!replaced)
			env[at++] = environ[i];
	}
	*ours_at = at;
	bool ok = plen > 0 ? add_var(&env[at++], "LD_PRELOAD=%.*s %s", (int)plen, preload, HTR_FRONT_SHIM)
	                   : add_var(&env[at++], "LD_PRELOAD=%s", HTR_FRONT_SHIM);
	ok = ok && add_var(&env[at++], "HEAPTRAIL_OUTPUT=%s", outdir);
	if (ok && plan->depth >= 0)
		ok = add_var(&env[at++], "HEAPTRAIL_DEPTH=%ld", plan->depth);
	if (ok && plan->on_error)
		ok = add_var(&env[at++], "HEAPTRAIL_ON_ERROR=%s", plan->on_error);
	if (ok && plan->chunk_kb >= 0)
		ok = add_var(&env[at++], "HEAPTRAIL_CHUNK_KB=%ld", plan->chunk_kb);
	if (!ok) {
		free_environment(env, *ours_at);
		return NULL;
	}
	return env;
}

/* run_cmd._spawn: the descriptors above 2 that a child would inherit
 * closed, SIGPIPE and SIGXFSZ as the default (subprocess's way). */
static pid_t spawn_program(char **program, char **env)
{
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
	if (posix_spawn_file_actions_init(&actions) != 0)
		return 0;
	if (posix_spawnattr_init(&attr) != 0) {
		posix_spawn_file_actions_destroy(&actions);
		return 0;
	}
	pid_t pid = 0;
	bool ok = true;
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		ok = false;
	for (struct dirent *e; ok && (e = readdir(d)) != NULL;) {
		int fd = atoi(e->d_name);
		if (fd > 2 && fd != dirfd(d)) {
			int flags = fcntl(fd, F_GETFD);
			if (flags >= 0 && !(flags & FD_CLOEXEC))
				ok = posix_spawn_file_actions_addclose(&actions, fd) == 0;
		}
	}
	if (d != NULL)
		closedir(d);
	sigset_t defaults;
	sigemptyset(&defaults);
	sigaddset(&defaults, SIGPIPE);
	sigaddset(&defaults, SIGXFSZ);
	if (ok && posix_spawnattr_setsigdefault(&attr, &defaults) == 0 &&
	    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF) == 0 &&
	    posix_spawnp(&pid, program[0], &actions, &attr, program, env) != 0)
		pid = 0;
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&actions);
	return pid;
}

/* Starts a plain run's program as run_cmd.run_fast would, and says so in
 * EARLY_PROGRAM_ENV: "PID;OUTPUT DIRECTORY". Returns its pid, or 0 when
 * nothing was started (the launcher then does it all, and says why if it
 * fails). */
static pid_t start_program(int argc, char **argv)
{
	struct run_plan plan;
	if (!parse_run(argc, argv, &plan) || HTR_FRONT_SHIM[0] != '/' || access(HTR_FRONT_SHIM, F_OK) != 0)
		return 0;
	size_t ours_at = 0;
	char *outdir = run_outdir(plan.output);
	char **env = outdir && fresh_outdir(outdir) ? run_environment(&plan, outdir, &ours_at) : NULL;
	pid_t pid = env ? spawn_program(plan.program, env) : 0;
	char *said = NULL;
	if (pid > 0 && asprintf(&said, "%d;%s", (int)pid, outdir) < 0)
		said = NULL; /* asprintf leaves it undefined when it fails */
	if (pid > 0 && (said == NULL || setenv(EARLY_PROGRAM_ENV, said, 1) != 0)) {
		/* Started but cannot be handed on: it is the launcher's to run
		 * then, so this one must not run on beside it. */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		pid = 0;
	}
	free(said);
	if (env != NULL)
		free_environment(env, ours_at);
	free(outdir);
	return pid;
}

int main(int argc, char **argv)
{
	/* Only this process says what it started. */
	unsetenv(EARLY_ENV);
	unsetenv(EARLY_PROGRAM_ENV);
	pid_t engine = 0, program = 0;
	if (argc > 1 && strcmp(argv[1], "report") == 0)
		engine = start_engine(argc - 2, argv + 2);
	else if (argc > 1 && strcmp(argv[1], "run") == 0)
		program = start_program(argc - 2, argv + 2);
	char **py = calloc((size_t)argc + 3, sizeof(*py));
	if (py != NULL) {
		py[0] = (char *)HTR_FRONT_PYTHON;
		py[1] = (char *)"-S";
		py[2] = (char *)HTR_FRONT_SCRIPT;
		memcpy(py + 3, argv + 1, (size_t)argc * sizeof(*py)); /* with argv's NULL */
		execv(py[0], py);
		/* The interpreter heaptrail was built with is gone: any python3
		 * on PATH runs the standard library heaptrail needs. */
		py[0] = (char *)"python3";
		execvp(py[0], py);
	}
	int why = py ? errno : ENOMEM;
	free(py);
	fprintf(stderr, "heaptrail: cannot start %s or python3: %s\n", HTR_FRONT_PYTHON, strerror(why));
	if (engine > 0) {
		kill(engine, SIGKILL);
		waitpid(engine, NULL, 0);
	}
	if (program > 0) /* runs on untraced by nobody: see it to its end */
		waitpid(program, NULL, 0);
	return 127;
}
