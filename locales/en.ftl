# amanat: the survivor's pages, English.
# Keys must exist in kk.ftl and ru.ftl too, with the same placeholders (a test checks).

lang-name = English
tagline = secure testimony intake
footer-no-js = This site works without JavaScript. It keeps no record of who visits: no addresses, no browser details.
nav-safety = Staying safe
nav-home = Home
nav-followup = Your case

## Index
index-title = amanat: tell what happened, safely
index-h1 = Tell what happened to you, safely
index-intro = amanat receives testimony and evidence (photos, videos, documents) of torture and violence by state agents. It is run for a coalition of human-rights defenders ({ $holders } key holders), who use what you send to document abuses and, if you agree, to help you and support legal cases.
index-who-h2 = Who can read it
index-who-p = Everything you send is encrypted the moment it arrives, to the coalition's keys. This server stores only the encrypted form and cannot read it. The keys are kept on computers that are never connected to the internet.
index-before-h2 = Before you start
index-tip-tor = If you can, use Tor Browser, on a device that others do not check.
index-tip-photos = Photos of injuries matter even if they have healed or are old. Send them as they are: the original file keeps the date it was taken.
index-tip-optional = Only the story and your consent are required. Skip any question you do not want to answer.
index-tip-codename = After sending you get a codename. Write it down or memorize it; do not keep it next to the photos on your phone. Nobody can recover it for you.
index-start = Start
index-followup = Already sent something? Come back to your case with your codename: read the coalition's answers and add more evidence.

## Safety
safety-title = Staying safe: amanat
safety-h1 = Staying safe
safety-tor = Use Tor Browser if you can. It hides from your internet provider that you visited this site, and hides from this site where you are.
safety-keeps-h2 = What this server keeps
safety-keeps = Only the encrypted form of what you send, the hour it arrived (not the minute), and the number and size of the encrypted files. It cannot read any of it.
safety-never-h2 = What it never keeps
safety-never = Your address on the internet, your browser, the pages you came from, your codename, the names of your files, or anything you wrote, in readable form.
safety-phone-h2 = Your phone
safety-phone = Photos and videos on your phone can be found if it is searched. After sending, and once you have your codename, consider deleting them from the gallery, from "recently deleted", and from any cloud backup. Also clear this browser's history.
safety-codename-h2 = Your codename
safety-codename = Write it on paper or learn it by heart. Never keep it on the phone next to the photos, and never send it to anyone. Nobody, not even the coalition, can recover it.

## Language switch
lang-switch = Language

## Form
form-title = Tell what happened: amanat
form-h1 = Tell what happened
form-intro = Only the first box and your consent at the end are required. Skip anything you do not want to answer. Everything is encrypted on arrival.
form-optional = optional
form-required = required
section-story = What happened
field-testimony = What happened, in your own words
section-when = When and where
field-when = When did it happen? Approximate dates are fine.
field-city = City or town
field-place = Where did it happen?
place-street = On the street
place-hospital = In a hospital
place-police = At a police station
place-detention = In a detention centre
place-other = Somewhere else
field-place_detail = The place, if you can say (its name or address)
field-duration = How long did it last?
section-who = Who did it
field-perpetrators_count = How many were there?
field-uniforms = Uniforms, insignia, masks
field-agency = Which agency, if you know (police, National Guard, KNB, army...)
field-perpetrators = Names or descriptions
field-what_they_said = What did they say?
section-acts = What was done to you
field-acts = Tick all that happened
act-beating = Beating
act-beating_objects = Beating with objects (batons, bottles...)
act-electric_shocks = Electric shocks
act-burns = Burns
act-suffocation = Suffocation (bag, gas mask, water)
act-stress_positions = Stress positions or restraints
act-sexual_violence = Sexual violence
act-threats = Threats to you or your family
act-denied_medical_care = Denied medical care
act-denied_food_water_sleep = Denied food, water or sleep
act-forced_confession = Forced to sign a confession
act-taken_from_hospital = Taken from a hospital
act-other = Something else
field-acts_detail = Anything else about what was done
section-injuries = Injuries and medical care
field-injuries_then = Your injuries at the time
field-injuries_now = Injuries or pain now (scars, pain, trouble sleeping...)
field-medical_care = Hospitals or doctors you saw
field-medical_documents = Medical documents you have, or that were refused to you
section-detention = Detention
field-detained_at = When were you detained?
field-detention_recorded_at = When was your detention written down officially?
field-lawyer_access = Could you see a lawyer? When?
field-family_informed = Was your family told where you were?
field-charges = Were you charged? With what?
section-witnesses = Witnesses
field-witnesses = Who saw what happened, or saw you afterwards?
section-consent = Your consent and wishes
field-consent_readers = Who may read this?
readers-coalition = Only the coalition
readers-lawyers = The coalition, and lawyers it chooses for you
readers-investigators = Also investigators, if it helps a case
field-contact_ok = May the coalition contact you?
contact-yes = Yes
contact-no = No
field-contact_how = How? (only if yes; leave empty to stay unreachable)
field-help_wanted = Do you want help?
help-legal = Legal help
help-medical = Medical help
help-psychological = Psychological help
field-evidence = Photos, videos or documents (up to { $files } files, { $size } in total)
field-evidence-legend = Photos, videos, documents
form-note-large = Large videos can take long on a slow connection. Keep this page open until you see your codename.
form-uploads-kept = { $count ->
    [one] The file you already sent is kept with this form: send it again without choosing it.
   *[other] The { $count } files you already sent are kept with this form: send it again without choosing them.
}
form-send = Send securely
upload-sending = Sending your files securely; keep this page open…
upload-resuming = The connection dropped; carrying on where it stopped…
upload-failed = The files could not be sent and nothing was stored. Check your connection and press "Send securely" again.
upload-restarted = The server restarted and lost this upload; sending the file again from the start…

## Receipt
receipt-title = Received: amanat
receipt-h1 = Received and stored safely
receipt-stored = Your testimony { $files ->
    [0] was
   *[other] and { $files } files were
} encrypted and stored. Only the coalition's key holders can read them.
codename-h2 = Your codename
codename-advice-write = Write it down on paper or memorize it. You need it to add evidence later or to read the coalition's answers.
codename-advice-phone = Do not keep it next to the photos on your phone, and do not send it to anyone.
codename-advice-once = It is shown only this once. Nobody, not even the coalition, can recover it.
codename-advice-cyrillic = You may write it in Cyrillic letters: бафоки is the same as bafoki.
practice-label = Practice: write it down, then type it here from your paper or memory
practice-check = Check
practice-correct = Correct: you have your codename.
practice-wrong = Not the same yet: compare what you wrote, letter by letter, with the codename above, and try again.
details-h2 = Details
details-reference = Reference
details-received = Received (hour, UTC)
proof-h2 = Proof of receipt (optional)
proof-p = The server added your submission to a signed log. This receipt proves, without trusting anyone, that it was received in this hour and never changed. A lawyer can use it.
proof-warning = Anything you keep can be found. If your phone or computer may be searched, do not download it: the coalition keeps the same proof for you.
proof-download = Download the receipt
receipt-replicated = A copy is also kept, encrypted, by a partner organisation in another country.
receipt-not-replicated-yet = Your testimony is stored safely here. Its copy for partner organisations abroad could not be sent yet: it will be sent by itself as soon as they can be reached. You do not need to send anything again.
receipt-close = When you have written the codename down, you can close this page.

## Follow-up
followup-title = Your case: amanat
followup-h1 = Come back to your case
followup-intro = Enter the codename you were given. You can then read the coalition's answers and add more evidence to the same case: a medical certificate, a new photo of a scar, a detention record.
followup-label = Your codename (five words; Cyrillic or Latin letters)
followup-open = Open my case
followup-note = Your case stays open for 15 minutes without activity, then closes by itself. On a shared device, close it when you are done.
followup-wrong = This codename does not open a case. Check each word and try again; Cyrillic or Latin letters, capitals and spaces do not matter.
followup-closed = Your case is closed on this device.
case-h1 = Your case
case-replies-h2 = Answers from the coalition
case-no-replies = No answer yet. The coalition reads everything offline, so answers take time. Come back in a few days.
case-replies-hidden = Answers are shown only once, right after you enter your codename, and are then deleted from the server. If you need an answer again, send a message asking for it.
case-replies-deleted = These answers have now been deleted from the server, so that no one who takes it can read them. Write down what you need before you leave this page.
case-reply-arrived = Arrived { $hour } (hour, UTC)
case-reply-unreadable = (A reply arrived but could not be read. Please tell the coalition.)
case-received-h2 = What the coalition has received
case-received-hour = Received (hour, UTC)
case-received-files = Files
case-received-receipt = Receipt
case-receipt-attested = Download (time confirmed by outside parties)
case-receipt-pending = Download (outside confirmation still pending: come back later)
case-add-h2 = Add to your case
case-add-text = Anything you want to add, in your own words (optional if you add a file)
case-add-send = Add securely
case-added = Received and stored safely: { $files ->
    [0] your text.
   *[other] { $files } files, with your text if you wrote any.
}
case-receipt-warning = Anything you keep can be found. The receipt proves when this arrived; download it only if your device is safe.
case-close = Close my case on this device

## Errors
error-title = Not sent: amanat
error-h1 = Not sent
error-back = Go back to the form. Your text may still be in your browser's back page; if not, it is below.
error-kept-text = What you wrote (copy it before you leave this page):
error-submission_too_large = The files are too large together: the limit is { $limit } for one submission. Send fewer or smaller files now and the rest later with your codename.
error-too_many_files = Too many files: at most { $limit } in one submission. Send the rest later with your codename.
error-text_too_large = The text is too long: at most { $limit } of text in one submission. Shorten it, or attach it as a file.
error-too_many_fields = Too many form fields: at most { $limit }.
error-part_headers_too_large = A file name is far too long. Rename the file and send again.
error-not_multipart = The form could not be read. Please send it again from this site's own page.
error-malformed_multipart = The upload could not be read: it arrived broken. Nothing was stored; please send it again.
error-nested_multipart = The upload could not be read. Nothing was stored.
error-field_without_name = The upload could not be read. Nothing was stored.
error-invalid_field_name = The upload could not be read. Nothing was stored.
error-unexpected_file = Files are accepted only in the box for photos, videos and documents.
error-invalid_utf8 = Some text could not be read. Nothing was stored.
error-testimony_missing = Please write what happened: it is the one thing this form needs.
error-duplicate_testimony = The story was sent twice. Nothing was stored; please send it again.
error-consent_missing = Please say who may read this (the last section). Nothing was stored.
error-incomplete_upload = The upload ended before it was complete, so nothing was stored. Please send it again.
error-upload_stalled = The upload stopped: no data arrived for { $limit } seconds. Nothing was stored; please send it again.
error-upload_too_slow = The upload took longer than { $limit } minutes in all. Nothing was stored; send fewer files at a time and the rest later with your codename.
error-upload_rate_too_low = The upload was too slow: on average less than { $limit } a second arrived. Nothing was stored; please send it again from a better connection, or fewer files at a time.
error-storage_full = The server is out of space, so nothing was stored. Please try again later.
error-not_found = There is no such page.
error-nothing_to_add = There is nothing to add: write something or choose a file.
error-codename_not_recognized = This codename does not open a case. Check each word.
error-session_expired = Your case was closed after 15 minutes without activity, to protect you. Nothing was stored. Enter your codename again.
error-busy = The server is busy. Nothing was stored. Please try again in a few minutes.
error-upload_not_found = The upload of your file was lost: it was stopped, it waited too long, or the server restarted. Nothing was stored; please choose the file again and send.
error-upload_incomplete = Your file has not finished uploading. Nothing was stored; wait for the upload to finish, then send again.
error-cross_site_request = This form was sent from another website, so it was refused and nothing was stored. Open this site's own page and try again.
error-internal_error = Something went wrong on the server and nothing was stored. Please try again.
