output "public_ip" {
  description = "The SIP address for the trunk (and its IP allowlist)."
  value       = aws_eip.front.public_ip
}
