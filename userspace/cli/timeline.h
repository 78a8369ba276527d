/*
 * A session's record as one line of its timeline (`sealtrail events`):
 * the record's fields as a JSON object, or a line for people, where
 * recorded text never reaches the terminal raw.
 */
#ifndef SEALTRAIL_TIMELINE_H
#define SEALTRAIL_TIMELINE_H

#include <stdbool.h>

#include "common/util.h"
#include "store/record.h"

/*
 * The line for rec into out (replaced, no newline). The human form has
 * none for terminal chunks and forks (too many; --json lists them): false.
 */
bool timeline_line(struct buf *out, const struct record *rec, bool json);

#endif
