/*
 * providers — preset range lists of filtering services (Proofpoint, Microsoft EOP, ...).
 *
 * Each preset is a file in the remote-ip-ranges-file format, named NAME.conf, under the
 * providers directory: $MXGATE_PROVIDERS_DIR if set, else the source tree's providers/
 * when running from a build directory, else PREFIX/share/mxgate/providers.  A config
 * names one as remote-ip-ranges = { "@NAME" }.
 *
 * A preset opens with a machine-readable header, one "# key: value" line each, ended by
 * the first line that is not one:
 *
 *   # provider: Proofpoint Essentials            who delivers from these ranges
 *   # region: US (US1-US5)                       which of its regions or instances
 *   # source: https://...                        where the list was taken from; one line
 *   # source: dns:_spf.example.com               each, a http(s) URL or dns:NAME; the
 *                                                first is the one source-date refers to
 *   # source-date: 2023-06-13                    the date the source states, or "undated"
 *   # confidence: medium-high                    high, medium-high, medium, medium-low,
 *                                                low or unverified
 *   # status: ready                              ready or unverified; ready only with
 *                                                high or medium-high confidence
 *   # update: page                               optional: how to refresh the list
 *   # hostname-suffixes: none documented          the delivering hosts' DNS names (suffixes
 *                                                for remote-hostname-suffixes = "@NAME"):
 *                                                "none documented" or names separated by
 *                                                ", "; names need the three lines below
 *   # hostname-suffixes-source: https://...      where the provider documents them
 *   # hostname-suffixes-date: 2024-01-31         the date it states, or "undated"
 *   # hostname-suffixes-confidence: medium       as confidence above
 *   # certificate-names: none documented         the names in the delivering hosts' client
 *                                                certificates (tls-sender-certificate-name
 *                                                = "@NAME"), with certificate-names-source,
 *                                                -date and -confidence likewise
 * Each of the two is optional to the reader (absent: the preset does not say); every
 * preset shipped in providers/ states both (tests/unit/test_providers.c).
 *
 * The body holds one range a line (any form range.h takes; '#' starts a comment).  A
 * preset is exact: no range with host bits set, no two ranges that overlap.
 */
#ifndef MXGATE_PROVIDERS_H
#define MXGATE_PROVIDERS_H

#include <stddef.h>

#include "base/range.h"

/* The directory presets are read from. */
const char *providers_dir(void);

/* Writes the path of preset name into path.  Returns 0, or -1 when the name is not a
 * preset name ([a-z0-9-]) or no such file exists. */
int providers_find(const char *name, char *path, size_t size);

/* What a provider documents about one proof of its delivering hosts beyond their
 * addresses.  text NULL: the preset does not say; n_names 0 with text set: "none
 * documented".  source, date and confidence are set exactly when n_names > 0. */
struct provider_proof {
	char *text;
	char **names; /* lower case, no leading dot */
	size_t n_names;
	char *source, *date, *confidence;
};

/* A preset file, read and checked.  Every string and array is owned by the struct. */
struct provider {
	char *name; /* file name without .conf */
	char *path;
	char *provider, *region, *source_date, *confidence, *status;
	char *update; /* NULL when the header has no update line */
	char **sources;
	size_t n_sources;
	struct range *ranges; /* in file order */
	size_t n_ranges;
	struct provider_proof hostnames;    /* hostname-suffixes */
	struct provider_proof certificates; /* certificate-names */
};

/* Reads and checks the preset at path (its name is the file name without ".conf"), with
 * the side-file reader and its default bounds (sidefile.h: a regular file, 256MB, lines of
 * 4096 bytes).  Returns it, or NULL with a sentence in err ("FILE:LINE: ..." when a line
 * is at fault; errlen >= 256 recommended), also when out of memory. */
struct provider *providers_load(const char *path, char *err, size_t errlen);

/* providers_free(NULL) is a no-op. */
void providers_free(struct provider *p);

/* The names of the presets in providers_dir(), sorted.  Returns the count and sets *names
 * (free with providers_names_free), or -1 with errno when the directory cannot be read
 * or memory runs out. */
int providers_names(char ***names);
void providers_names_free(char **names, size_t n);

/* The presets a mistyped name most likely meant, for a "did you mean" hint: every preset
 * whose name starts with WORD- ("proofpoint" gives both Proofpoint Essentials regions),
 * else those nearest by edit distance (a typo).  word may start with '@'; case is ignored.
 * Writes "'@a', '@b' or '@c'" into out and returns 0, or returns -1 (out empty) when none
 * is near. */
int providers_suggest(const char *word, char *out, size_t size);

#endif
