# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab: sites as network namespaces on the controller, reached over ssh like hosts.

``plan`` (names and addresses, pure), ``render`` (inventory, known_hosts, site config,
containerlab topology; pure), ``network`` (pyroute2), ``sites`` (the site init's processes),
``files`` and ``backend`` (what the ``ikelab.ipsec.lab`` module drives).
"""
