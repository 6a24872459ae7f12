#!/usr/bin/perl
#
# An independent SMSC for mailsms's integration tests, adapted from Net::SMPP's example
# /usr/share/doc/libnet-smpp-perl/examples/smsc.pl
# (Copyright (c) 2010 Sampo Kellomaki, (c) 2001 SymLABS; Perl Artistic / GPL licence, as
# Net::SMPP). Changes for the tests:
#   * binds 127.0.0.1 on the port given on the command line (0 = any; the port chosen is
#     printed as "LISTENING <port>");
#   * checks the bind password (second argument) and refuses a wrong one with
#     ESME_RINVPASWD (0x0000000E), encoded by Net::SMPP itself;
#   * prints one line per PDU received: "PDU <cmd-hex> seq=<n> key=<hex> ..." with every
#     decoded field hex-encoded, so the test can check exact bytes;
#   * answers submit_sm with a distinct decimal message id; destinations starting 999 are
#     refused with ESME_RINVDSTADR (0x0B), 888 with ESME_RTHROTTLED (0x58);
#   * echoes submit_sm to destinations starting 777 back as MO deliver_sm (same
#     esm_class, data_coding, short_message and TLVs), the parts of a UDH-concatenated
#     message in reverse order once all have arrived; deliver_sm_resp is logged as
#     "DELIVER_RESP status=<n>";
#   * does not die on responses it has no handler for (the original called undef).
#
# Usage: netsmpp_smsc.pl PORT PASSWORD

use strict;
use warnings;
use Net::SMPP;
use IO::Handle;

STDOUT->autoflush(1);
my ($port, $pw) = @ARGV;
$port = 0 unless defined $port;
$pw = 'secret' unless defined $pw;
my $sysid = 'NETSMPP';
my $counter = 0;
my %parts;    # concat ref -> [pdu, ...]

sub log_pdu {
    my ($pdu) = @_;
    my @fields;
    for my $k (sort keys %$pdu) {
        next if $k eq 'data' || $k =~ /^\d+$/;
        my $v = $pdu->{$k};
        next if !defined $v || ref $v;
        push @fields, "$k=" . unpack('H*', $v);
    }
    printf "PDU %08x seq=%d %s\n", $pdu->{cmd}, $pdu->{seq}, join(' ', @fields);
}

sub bind_reply {
    my ($me, $pdu, $method) = @_;
    $me->set_version(0x34);
    my $status = (defined $pdu->{password} && $pdu->{password} eq $pw) ? 0 : 0x0E;
    print "BIND status=$status\n";
    $me->$method(system_id => $sysid, seq => $pdu->{seq}, status => $status);
    return $status == 0;
}

sub echo_mo {
    my ($me, $pdu) = @_;
    my @opt;
    for my $name (qw(sar_msg_ref_num sar_total_segments sar_segment_seqnum message_payload)) {
        push @opt, $name => $pdu->{$name} if defined $pdu->{$name};
    }
    my $resp = $me->deliver_sm(
        source_addr_ton  => 1,
        source_addr_npi  => 1,
        source_addr      => $pdu->{destination_addr},
        dest_addr_ton    => $pdu->{source_addr_ton},
        dest_addr_npi    => $pdu->{source_addr_npi},
        destination_addr => $pdu->{source_addr},
        esm_class        => $pdu->{esm_class},
        data_coding      => $pdu->{data_coding},
        short_message    => $pdu->{short_message},
        @opt,
    );
    printf "DELIVER_RESP status=%d\n", defined $resp ? $resp->{status} : -1;
}

sub on_submit {
    my ($me, $pdu) = @_;
    my $dest = $pdu->{destination_addr};
    if ($dest =~ /^999/) {
        $me->submit_sm_resp(message_id => '', seq => $pdu->{seq}, status => 0x0B);
        return;
    }
    if ($dest =~ /^888/) {
        $me->submit_sm_resp(message_id => '', seq => $pdu->{seq}, status => 0x58);
        return;
    }
    $counter++;
    $me->submit_sm_resp(message_id => sprintf('%d%05d', $$, $counter), seq => $pdu->{seq});
    return unless $dest =~ /^777/;
    my $sm = $pdu->{short_message};
    if (($pdu->{esm_class} & 0x40) && length($sm) > 6) {
        my ($udhl, $iei, $iel, $ref, $total, $seq) = unpack 'C6', $sm;
        if ($iei == 0 && $iel == 3) {
            push @{$parts{$ref}}, $pdu;
            return if scalar(@{$parts{$ref}}) < $total;
            echo_mo($me, $_) for reverse @{delete $parts{$ref}};
            return;
        }
    }
    echo_mo($me, $pdu);
}

my $smpp = Net::SMPP->new_listen('127.0.0.1', port => $port, smpp_version => 0x34)
    or die "Can't create server: $!";
print "LISTENING " . $smpp->sockport . "\n";
$SIG{CHLD} = 'IGNORE';

my $c;
while (1) {
    $c = $smpp->accept;
    next if !defined $c;
    my $pid = fork;
    last if defined $pid && $pid == 0;    # the child handles the connection
}
undef $smpp;

while (1) {
    my $pdu = $c->read_pdu() or do { print "CLOSED\n"; exit 0 };
    log_pdu($pdu);
    my $cmd = $pdu->{cmd};
    if ($cmd == 0x00000009) {
        bind_reply($c, $pdu, 'bind_transceiver_resp') or do { close $c; exit 0 };
    } elsif ($cmd == 0x00000002) {
        bind_reply($c, $pdu, 'bind_transmitter_resp') or do { close $c; exit 0 };
    } elsif ($cmd == 0x00000001) {
        bind_reply($c, $pdu, 'bind_receiver_resp') or do { close $c; exit 0 };
    } elsif ($cmd == 0x00000004) {
        on_submit($c, $pdu);
    } elsif ($cmd == 0x00000015) {
        $c->enquire_link_resp(seq => $pdu->{seq});
    } elsif ($cmd == 0x00000006) {
        $c->unbind_resp(seq => $pdu->{seq});
        print "UNBOUND\n";
        exit 0;
    } elsif (!($cmd & 0x80000000)) {
        $c->generic_nack(seq => $pdu->{seq}, status => 0x03);
    }
}
