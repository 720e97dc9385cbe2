/*
 * Real symbols for DPDK's static inline fast-path functions and per-lcore variables.
 *
 * DPDK defines its burst, mbuf and errno helpers as `static inline` functions or macros,
 * so the shared libraries export no symbol Rust could link to. Each function here calls
 * exactly one of them and nothing else; build.rs gives the Rust binding the DPDK name
 * (`palisade_rte_eth_rx_burst` is `dpdk_sys::rte_eth_rx_burst`).
 */
#ifndef PALISADE_DPDK_SHIM_H
#define PALISADE_DPDK_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

/** rte_eth_rx_burst(): receive up to nb_pkts packets from an rx queue. */
uint16_t palisade_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
				   struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
/** rte_eth_tx_burst(): hand up to nb_pkts packets to a tx queue; returns how many it took. */
uint16_t palisade_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
				   struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

/** rte_pktmbuf_alloc(): one packet mbuf from a pool, or NULL when the pool is empty. */
struct rte_mbuf *palisade_rte_pktmbuf_alloc(struct rte_mempool *mp);
/** rte_pktmbuf_alloc_bulk(): count mbufs or none; 0 on success, -ENOENT otherwise. */
int palisade_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
				    unsigned int count);
/** rte_pktmbuf_free(): free a packet mbuf and all its segments (NULL is allowed). */
void palisade_rte_pktmbuf_free(struct rte_mbuf *m);

/** rte_pktmbuf_append(): grow the data at its end; NULL when the tailroom is too small. */
char *palisade_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
/** rte_pktmbuf_prepend(): grow the data at its start; NULL when the headroom is too small. */
char *palisade_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
/** rte_pktmbuf_adj(): remove len bytes from the start; NULL when the data is shorter. */
char *palisade_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
/** rte_pktmbuf_trim(): remove len bytes from the end; -1 when the data is shorter. */
int palisade_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
/** rte_pktmbuf_headroom(): free bytes before the data in the first segment. */
uint16_t palisade_rte_pktmbuf_headroom(const struct rte_mbuf *m);
/** rte_pktmbuf_tailroom(): free bytes after the data in the last segment. */
uint16_t palisade_rte_pktmbuf_tailroom(const struct rte_mbuf *m);

/** rte_pktmbuf_mtod(): the start of the data in the first segment. */
void *palisade_rte_pktmbuf_mtod(const struct rte_mbuf *m);
/** rte_pktmbuf_data_len(): bytes of data in the first segment. */
uint16_t palisade_rte_pktmbuf_data_len(const struct rte_mbuf *m);
/** rte_pktmbuf_pkt_len(): bytes of data in all segments. */
uint32_t palisade_rte_pktmbuf_pkt_len(const struct rte_mbuf *m);

/** rte_errno: the calling thread's last DPDK error number. */
int palisade_rte_errno(void);
/** rte_errno = value: clears it before a call whose failure may not set it. */
void palisade_rte_errno_set(int value);
/** rte_lcore_id(): the calling thread's lcore id, or LCORE_ID_ANY for a non-EAL thread. */
unsigned int palisade_rte_lcore_id(void);

#endif
