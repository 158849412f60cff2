/* The `heaptrail` command: starts the Python CLI (the launcher script,
 * with -S: heaptrail needs no site-packages), and for a plain `heaptrail
 * report` starts the analysis engine first.
 *
 * Python takes about 7 ms to start before it can run a line, and a report
 * is mostly the engine's time: started from here, the engine reads the
 * traces on one core while Python starts on the other (Mercurial's chg
 * exists for the same start-up cost). Nothing here decides anything: the
 * launcher is told which engine command runs (HEAPTRAIL_EARLY_ENGINE), and
 * uses it only when that is exactly the command it would have run itself
 * (tools/heaptrail/spawn.py); else it ends it and starts its own. So the
 * command line is read as report_early.py reads it (front_options.h is
 * generated from its tables), and anything unusual starts no engine. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "front_options.h"
#include HTR_FRONT_PATHS /* the interpreter, the launcher and the engine */

extern char **environ;

#define EARLY_ENV "HEAPTRAIL_EARLY_ENGINE"

static const struct front_option *find_option(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(front_options) / sizeof(front_options[0]); i++)
		if (strlen(front_options[i].name) == len && memcmp(front_options[i].name, name, len) == 0)
			return &front_options[i];
	return NULL;
}

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
		const struct front_option *opt = find_option(word, len);
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
		if (strcmp(opt->name, "--input-format") == 0)
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

int main(int argc, char **argv)
{
	/* Only this process says which engine it started. */
	unsetenv(EARLY_ENV);
	pid_t engine = 0;
	if (argc > 1 && strcmp(argv[1], "report") == 0)
		engine = start_engine(argc - 2, argv + 2);
	char **py = calloc((size_t)argc + 3, sizeof(*py));
	if (py != NULL) {
		py[0] = (char *)HTR_FRONT_PYTHON;
		py[1] = (char *)"-S";
		py[2] = (char *)HTR_FRONT_SCRIPT;
		memcpy(py + 3, argv + 1, (size_t)argc * sizeof(*py)); /* with argv's NULL */
		execvp(py[0], py);
	}
	int why = py ? errno : ENOMEM;
	fprintf(stderr, "heaptrail: cannot start %s: %s\n", HTR_FRONT_PYTHON, strerror(why));
	if (engine > 0) {
		kill(engine, SIGKILL);
		waitpid(engine, NULL, 0);
	}
	return 127;
}
