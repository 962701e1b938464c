/*
 * prompt.h - prompt templates: loaded from prompts/ before fork (and on
 * SIGHUP into a new set; a broken set never replaces a good one),
 * assembled in the section order prompts/sections.conf gives per call
 * type, rendered with strict {{variable}} substitution.
 */
#ifndef NAIBER_PROMPT_H
#define NAIBER_PROMPT_H

#include <stddef.h>

struct prompt_set;

/* One variable's value for rendering; values are plain text. */
struct prompt_var {
	const char	*pv_name;
	const char	*pv_value;
};

/* NULL on error with every problem found described in err. */
struct prompt_set	*prompt_load(const char *, char *, size_t);
void			 prompt_free(struct prompt_set *);
/*
 * The system prompt for a call type ("general", "health_check"): its
 * sections in order, each rendered.  malloc'd; NULL with err set if a
 * template names a variable not given in vars, or the type is unknown.
 */
char	*prompt_system(const struct prompt_set *, const char *,
	    const struct prompt_var *, size_t, char *, size_t);
/*
 * The template first message: "first_new", "first_returning" or
 * "first_health" (see sections.conf), rendered.  malloc'd or NULL.
 */
char	*prompt_first(const struct prompt_set *, const char *,
	    const struct prompt_var *, size_t, char *, size_t);
/* Render one template text (exposed for tests and the fuzzer). */
char	*prompt_render(const char *, const struct prompt_var *, size_t,
	    char *, size_t);

#endif
