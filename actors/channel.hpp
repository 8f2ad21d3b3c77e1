// The `channel` role (server): one per user with connected or recently connected clients.
// It owns that user's SQLite file through a sync_channel::ChannelCore (runtime/sync), merges
// the sessions' pushes, makes them durable (one fsync per group of concurrent pushes), acks,
// and forwards what the user's other sessions have not seen.
//
// SQLite blocks, so a channel runs detached (its own thread) and never stalls the
// scheduler. Sessions are told everything through tandem.sync.Envelope messages, in order;
// an Error envelope with `fatal` set means the session must close. The channel reports to
// the directory when its session count drops to or rises from zero; the directory decides
// when to close it (CloseChannel), after which it records acknowledgements and stops.
//
// Replica links (docs/cluster.md): told by the directory (link_atom) of the same user's
// channel on another host, a channel joins it as a replica member (Join.replica) and merges
// the forwards it gets there, acknowledging each once durable; the joined channel links back
// (Join.back). Links are per host, at most one each way; one that dies or errs is dropped
// and the channel asks the directory again (LinksWanted) while it has fewer than it keeps.
#pragma once

#include "proto/caf_glue.hpp"
#include "proto/cluster.pb.h"
#include "proto/sync.pb.h"
TANDEM_PROTO_CAF_GLUE(tandem::change)
TANDEM_PROTO_CAF_GLUE(tandem::sync)
TANDEM_PROTO_CAF_GLUE(tandem::cluster)

#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <map>
#include <memory>
#include <string>

#include "runtime/sync/channel_core.hpp"

namespace tandem::actors {

// What a channel tells the directory (a subset of directory_actor, so that this header does
// not depend on the directory's).
using channel_usage_sink = caf::typed_actor<caf::reacts_to<cluster::ChannelUsage>, caf::reacts_to<cluster::LinksWanted>>;

// From the directory: link to this channel of the same user on another host.
using link_atom = caf::atom_constant<caf::atom("link")>;

// Where a channel sends a session's envelopes (a subset of session_actor).
using envelope_sink = caf::typed_actor<caf::reacts_to<sync::Envelope>>;

using channel_actor = caf::typed_actor<
    caf::reacts_to<cluster::Join>,              // from a session; answered with Envelopes
    caf::reacts_to<cluster::SessionPush>,
    caf::reacts_to<cluster::SessionClientAck>,
    caf::reacts_to<cluster::Leave>,
    caf::reacts_to<cluster::CloseChannel>,      // from the directory
    caf::reacts_to<sync::Envelope>,             // from a channel this one joined as a replica link
    caf::reacts_to<link_atom, caf::actor>,      // from the directory: join that channel as a link
    caf::reacts_to<link_atom>,                  // from the directory: no more links were found
    caf::replies_to<cluster::ChannelStatusRequest>::with<cluster::ChannelStatus>>;  // its sessions

// Spawns the channel of `user` on `path` (the user's file), detached (its own thread: SQLite
// blocks). The file is opened on that thread; if that fails, every Join is answered with a
// fatal UNAVAILABLE error and the channel stops.
channel_actor spawn_channel(caf::actor_system& system, std::string user, std::string path,
                            sync_channel::ChannelOptions options, channel_usage_sink directory);

}  // namespace tandem::actors
