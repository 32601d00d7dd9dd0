/*
 * providers — preset range lists of filtering services (Proofpoint, Microsoft EOP, ...).
 *
 * Each preset is a file in the remote-ip-ranges-file format, named NAME.conf, under the
 * providers directory: $MXGATE_PROVIDERS_DIR if set, else the source tree's providers/
 * when running from a build directory, else PREFIX/share/mxgate/providers.  A config
 * names one as remote-ip-ranges = { "@NAME" }.
 */
#ifndef MXGATE_PROVIDERS_H
#define MXGATE_PROVIDERS_H

#include <stddef.h>

/* The directory presets are read from. */
const char *providers_dir(void);

/* Writes the path of preset name into path.  Returns 0, or -1 when the name is not a
 * preset name ([a-z0-9-]) or no such file exists. */
int providers_find(const char *name, char *path, size_t size);

#endif
