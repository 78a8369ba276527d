/*
 * Linked into the sanitizer build only (make asan): the options the suite
 * runs with, where its environment does not reach too (sealtraild started
 * through sudo, the CLI the access server runs with a clean environment).
 */
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);

const char *__asan_default_options(void)
{
	return "detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0";
}

const char *__ubsan_default_options(void)
{
	return "print_stacktrace=1:halt_on_error=1";
}
