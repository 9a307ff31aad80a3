/* One forward step's input: tokens of many sequences, each with its own
 * position, sequence and cache slot.
 *
 * Row t feeds token ids[t] of sequence seq[t] at position pos[t]; its K and V
 * are stored in pool slot slot[t] (which must be the slot block_table[seq[t]]
 * maps pos[t] to, in a block the sequence alone holds). Every position a row
 * attends (its sequence's positions up to its own) must have been stored by
 * an earlier step or by a row of this batch. Logits are produced for the rows
 * listed in logit_rows (ascending), in that order. All arrays are host memory
 * owned by the caller, valid for the call.
 */
#ifndef FITLM_RUNTIME_BATCH_H
#define FITLM_RUNTIME_BATCH_H

#include <stdint.h>

typedef struct fitlm_batch {
    uint32_t n_tokens;
    const int32_t *ids;                /* [n_tokens] */
    const int32_t *pos;                /* [n_tokens] */
    const int32_t *seq;                /* [n_tokens] index into block_table */
    const int64_t *slot;               /* [n_tokens] */
    const int32_t *const *block_table; /* [n_seqs] */
    uint32_t n_seqs;
    const int32_t *logit_rows;         /* [n_logits] rows whose logits are wanted */
    uint32_t n_logits;
    uint32_t n_micro;                  /* pipeline parallel: row ranges the stages pass on one after the other;
                                          0 = chosen from the batch (forward.c), 1 = the whole batch at once */
} fitlm_batch;

#endif
